"""Crash-safe file writes: a reader sees the old file or the new one, never half of one.

New files get the usual permissions, ``0o666`` less the process umask, like any file that ``open``
creates. These helpers raise plain ``OSError``; :func:`output_errors` turns that into the project's
:class:`~lnl_cli.errors.OutputError` where a failed write is the user's problem (a full disk, a
read-only folder) rather than something to shrug off (a cache).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import math
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, IO, Iterator

from lnl_cli.errors import OutputError

NEW_FILE_MODE = 0o666  # what open() asks for; the umask takes away the rest
# Bytes read at a time when hashing: a checkpoint of hundreds of MB is never held in memory whole.
HASH_CHUNK_BYTES = 1 << 20


@contextlib.contextmanager
def output_errors(path: Path) -> Iterator[None]:
    """Report an OSError raised while writing `path` as a one-line OutputError (exit 74)."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def current_umask() -> int:
    """The process umask. Reading it means setting it, so it is set straight back."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through `write` into a temp file in the same folder, fsync it, then rename over `path`.

    A rename is right for regular files only: an existing symlink is written through (its target is
    replaced, the link stays), and a device, FIFO or socket is written directly (renaming over
    /dev/null would make it a regular file), so that ENOSPC from /dev/full is an error like any other.

    mkstemp makes the temp file 0600 whatever the umask; it is given the mode a plain open() would
    have, so checkpoints and summaries are as readable as metrics.jsonl."""
    target = write_target(Path(path))
    if target.exists() and not target.is_file():
        _write_in_place(target, write)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, NEW_FILE_MODE & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(target.parent)


def write_target(path: Path) -> Path:
    """The file a write to `path` lands in: `path` itself, or for a symlink (a chain of them, a dangling
    one too) the file it points to, so that the link is kept and what it names is written."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _write_in_place(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write to something that is not a regular file (a device, a FIFO) directly: there is no old
    content to keep whole, and a rename would replace the special file itself. A folder is refused."""
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    with open(target, "wb") as handle:
        write(handle)
        handle.flush()


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


def unshare(path: Path) -> None:
    """Give `path` an inode of its own before it is changed in place (appended to, truncated): a file
    with other hard links (a run folder copied with ``cp -al``) is copied atomically into a new file
    first, so that the change never reaches the other names. Renames and atomic writes need no such
    care: they make a new inode anyway."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode) or info.st_nlink <= 1:
        return
    with open(path, "rb") as source:
        atomic_write(Path(path), lambda handle: shutil.copyfileobj(source, handle, HASH_CHUNK_BYTES))
    with contextlib.suppress(OSError):
        os.chmod(write_target(Path(path)), stat.S_IMODE(info.st_mode))


def append_json_line(path: Path, record: dict[str, Any]) -> None:
    """Append one whole line in a single write. A write that fails or stops short (a full disk) is cut
    back to the old end of the file, so no partial record is left behind. A file shared with other hard
    links is unshared first (:func:`unshare`): the append lands in this name only."""
    line = (to_json(record) + "\n").encode("utf-8")
    unshare(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, NEW_FILE_MODE)
    try:
        end = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # only part of the line fitted
            os.fsync(fd)
        except BaseException:
            _truncate_quietly(fd, end)
            raise
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


def sha256_of(handle: IO[bytes]) -> str:
    """Hex SHA-256 of what is left to read in `handle`, read in chunks.

    Takes an open file rather than a path so that a caller can hash and then load the very bytes it
    hashed (an atomically replaced file keeps its old content behind an open handle)."""
    digest = hashlib.sha256()
    while chunk := handle.read(HASH_CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str | None:
    """Hex SHA-256 of the file at `path`, streamed; None when it is missing or cannot be read."""
    try:
        with open(path, "rb") as handle:
            return sha256_of(handle)
    except OSError:
        return None


def expand_path(text: str | Path) -> Path:
    """`text` as a path with a leading ``~`` or ``~user`` expanded; left as written when there is no such
    home folder (the path is then simply not found, instead of the lookup failing)."""
    path = Path(text)
    try:
        return path.expanduser()
    except (RuntimeError, KeyError):
        return path


def _truncate_quietly(fd: int, size: int) -> None:
    """Cut a file back to `size` bytes; best effort, as it runs while another error propagates."""
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass
