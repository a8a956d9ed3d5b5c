"""Crash-safe writes: permissions that follow the umask, nothing half-written after a failed write, standard JSON."""

from __future__ import annotations

import errno
import json
import os
import stat
import threading

import pytest

from lnl_cli import fileio
from lnl_cli.errors import OutputError
from lnl_cli.fileio import append_json_line, atomic_write_json, to_json


def _strict(text: str):
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))


def test_json_files_are_standard_json_with_null_for_nan_and_infinity(tmp_path):
    record = {"epoch": 1, "label_loss": float("nan"), "test": {"accuracy": float("inf")}, "per_seed": [0.5, float("-inf")]}
    expected = {"epoch": 1, "label_loss": None, "test": {"accuracy": None}, "per_seed": [0.5, None]}
    atomic_write_json(tmp_path / "summary.json", record)
    assert _strict((tmp_path / "summary.json").read_text()) == expected
    append_json_line(tmp_path / "metrics.jsonl", record)
    append_json_line(tmp_path / "metrics.jsonl", {"epoch": 2, "label_loss": 0.25})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [_strict(line) for line in lines] == [expected, {"epoch": 2, "label_loss": 0.25}]
    assert to_json({"a": (1, 2.5)}) == '{"a": [1, 2.5]}'
    assert record["label_loss"] != record["label_loss"]  # the caller's data is left as it was


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002], ids=oct)
def test_new_files_get_0666_less_the_umask(tmp_path, umask, mask):
    umask(mask)
    fileio.atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
    fileio.atomic_write_json(tmp_path / "summary.json", {"a": 1})
    fileio.atomic_write(tmp_path / "last.pt", lambda handle: handle.write(b"\0"))
    fileio.append_json_line(tmp_path / "metrics.jsonl", {"epoch": 1})
    for name in ("config.yaml", "summary.json", "last.pt", "metrics.jsonl"):
        assert _mode(tmp_path / name) == 0o666 & ~mask, name


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "summary.json"
    fileio.atomic_write_text(path, "old\n")

    def full_disk(handle):
        handle.write(b"new, half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        fileio.atomic_write(path, full_disk)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_an_append_that_stops_short_is_cut_back(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    fileio.append_json_line(path, {"epoch": 1})
    before = path.read_bytes()
    real_write = os.write
    monkeypatch.setattr(fileio.os, "write", lambda fd, data: real_write(fd, data[: len(data) // 2]))
    with pytest.raises(OSError) as raised:
        fileio.append_json_line(path, {"epoch": 2, "label_loss": 0.5})
    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    monkeypatch.undo()
    fileio.append_json_line(path, {"epoch": 2})
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [1, 2]


def test_output_errors_become_one_line_output_errors(tmp_path):
    with pytest.raises(OutputError, match=r"cannot write .*x\.json: Read-only file system") as raised:
        with fileio.output_errors(tmp_path / "x.json"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    assert raised.value.exit_code == 74


# ------------------------------------------------------------------ what an atomic write must not replace (issue 28)
def test_an_atomic_write_through_a_symlink_keeps_the_link_and_writes_its_target(tmp_path):
    (tmp_path / "keep.txt").write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to("keep.txt")
    fileio.atomic_write_text(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == "keep.txt"
    assert (tmp_path / "keep.txt").read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "link.csv"]


def test_an_atomic_write_to_a_fifo_writes_into_it_and_keeps_it_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    fileio.atomic_write_text(fifo, "rows\n")
    reader.join(timeout=10)
    assert received == [b"rows\n"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.parametrize("write", [
    lambda path: fileio.append_json_line(path, {"epoch": 1}),  # an error, not a partial line
    lambda path: fileio.atomic_write_text(path, "x" * 10_000),  # the device is written directly, not replaced
], ids=["append", "atomic"])
def test_writing_through_a_link_to_a_full_device_is_enospc_and_the_device_stays(tmp_path, write):
    """/dev/full fails every write with ENOSPC, also for root (who ignores read-only permissions)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    link = tmp_path / "out.csv"
    link.symlink_to("/dev/full")
    with pytest.raises(OSError) as raised:
        write(link)
    assert raised.value.errno == errno.ENOSPC
    assert link.is_symlink() and stat.S_ISCHR(os.stat("/dev/full").st_mode)
    with pytest.raises(OutputError, match="No space left on device"):  # the CLI's exit 74
        with fileio.output_errors(link):
            write(link)
