"""Crash-safe file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through `write` into a temp file in the same folder, fsync it, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def finite_or_none(data: Any) -> Any:
    """`data` with every NaN or infinite float replaced by None (dicts, lists and tuples walked)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_or_none(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(value) for value in data]
    return data


def to_json(data: Any, indent: int | None = None) -> str:
    """Standard JSON, as every reader accepts it: a NaN or infinite number (a metric of a broken model,
    say) becomes null instead of Python's non-standard NaN/Infinity."""
    return json.dumps(finite_or_none(data), indent=indent, allow_nan=False)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, to_json(data, indent=2) + "\n")


def append_json_line(path: Path, record: dict[str, Any]) -> None:
    """Append one whole line in a single write, so a crash leaves no partial record behind."""
    line = (to_json(record) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV with a header; columns in first-seen order, missing cells empty."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def expand_path(text: str | Path) -> Path:
    """`text` as a path with a leading ``~`` or ``~user`` expanded; left as written when there is no such
    home folder (the path is then simply not found, instead of the lookup failing)."""
    path = Path(text)
    try:
        return path.expanduser()
    except (RuntimeError, KeyError):
        return path
