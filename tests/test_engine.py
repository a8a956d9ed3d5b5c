"""The training loop on real runs: signals mid-epoch and divergence; a full disk or a read-only folder."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lnl_cli.checkpoint import load_checkpoint

from helpers import assert_one_line_error, lnl, lnl_in_process


# ------------------------------------------------------------------ signals on a real run
@pytest.mark.mnist
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.slow
def test_a_signal_mid_epoch_saves_a_loadable_checkpoint_and_exits_with_its_code(tmp_path, mnist_root, sig, code):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "lnl_cli", "train", "--data-root", str(mnist_root), "--out", str(out),
         "data.train_size=4000", "data.test_size=500", "data.val_size=500", "train.epochs=20", "train.pretrain_epochs=1",
         "train.batch_size=16", "train.num_threads=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / "metrics.jsonl").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)  # into the second epoch
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and f"interrupted by {signal.Signals(sig).name}" in stderr
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["epoch"] >= 1
    resumed = lnl("train", "--resume", str(out), "train.epochs=2", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs"] == 2


# ------------------------------------------------------------------ divergence
@pytest.mark.mnist
@pytest.mark.slow
def test_divergence_exits_5_naming_the_loss_and_keeps_no_bad_checkpoint(tmp_path, mnist_root):
    out = tmp_path / "nan"
    result = lnl("train", "--data-root", str(mnist_root), "--out", str(out), "method=baseline", "train.lr=1e12",
                 "data.train_size=512", "data.test_size=100", "train.epochs=2", "train.num_threads=1")
    assert_one_line_error(result, 5, "label_loss", "epoch 1")
    assert not (out / "last.pt").exists()  # no finished epoch: nothing that looks valid


# ------------------------------------------------------------------ a signal before training starts
SLOW_DATA = """
import sys, time
from lnl_cli import engine
from lnl_cli.cli import main

def slow_dataset(config, with_train=True):
    print("loading data", file=sys.stderr, flush=True)
    time.sleep(120)
    raise AssertionError("the signal should have stopped the loading")

engine.load_dataset = slow_dataset
sys.argv = ["lnl", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.slow
def test_a_signal_while_loading_data_exits_at_once_and_leaves_no_run_folder(tmp_path, sig, code):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", SLOW_DATA, "train", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = iter(process.stderr.readline, "")  # the progress status ("loading ... data…") may come first
    assert any(line.strip() == "loading data" for line in lines)
    started = time.time()
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)
    assert time.time() - started < 20  # not after the 120 s of loading
    assert process.returncode == code, stderr
    assert stdout == "" and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert lines == [f"Error: interrupted by {signal.Signals(sig).name} before training started; nothing was written"]
    assert not out.exists()


# ------------------------------------------------------------------ a full disk, a read-only folder
TINY_CLI = ["method=baseline", "train.epochs=2", "train.batch_size=16", "train.num_threads=1"]


@pytest.fixture
def tiny_data(monkeypatch):
    from helpers import tiny_dataset

    from lnl_cli import engine

    monkeypatch.setattr(engine, "load_dataset", lambda config: tiny_dataset(n=64))
    monkeypatch.delenv("LNL_DEBUG", raising=False)


def _failing_on_call(real, call: int, code: int = errno.ENOSPC):
    """`real`, except that its `call`-th call raises OSError(code) as a full or read-only disk does."""
    calls = []

    def write(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    return write


def _writers():
    from lnl_cli import checkpoint, run_folder

    return {"config": (run_folder, "atomic_write_text"), "metrics": (run_folder, "append_json_line"),
            "checkpoint": (checkpoint, "atomic_write"), "summary": (run_folder, "atomic_write_json")}


@pytest.mark.parametrize("target, call, epochs_kept", [
    ("config", 1, None), ("metrics", 1, None), ("checkpoint", 1, None),  # no finished epoch: no folder
    ("metrics", 2, 1), ("checkpoint", 2, 1), ("summary", 1, 2),          # finished epochs are kept
])
def test_a_full_disk_is_exit_74_in_one_line_and_leaves_no_half_run(tmp_path, monkeypatch, tiny_data, target, call,
                                                                   epochs_kept):
    module, name = _writers()[target]
    monkeypatch.setattr(module, name, _failing_on_call(getattr(module, name), call))
    out = tmp_path / "run"
    result = lnl_in_process("train", "--out", str(out), *TINY_CLI)
    assert_one_line_error(result, 74, "No space left on device", str(out))
    if epochs_kept is None:
        assert not out.exists()
        return
    assert load_checkpoint(out / "last.pt")["epoch"] == epochs_kept
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == \
        list(range(1, epochs_kept + 1))
    assert not (out / "summary.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_read_only_file_system_on_resume_is_exit_74_and_keeps_the_checkpoint(tmp_path, monkeypatch, tiny_data):
    from lnl_cli import checkpoint

    out = tmp_path / "run"
    assert lnl_in_process("train", "--out", str(out), *TINY_CLI, "train.epochs=1").returncode == 0
    before = (out / "last.pt").read_bytes()
    monkeypatch.setattr(checkpoint, "atomic_write", _failing_on_call(checkpoint.atomic_write, 1, errno.EROFS))
    result = lnl_in_process("train", "--resume", str(out), "train.epochs=2")
    assert_one_line_error(result, 74, "Read-only file system")
    assert (out / "last.pt").read_bytes() == before
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_a_read_only_parent_folder_is_exit_74(tmp_path, tiny_data):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        result = lnl_in_process("train", "--out", str(parent / "run"), *TINY_CLI)
    finally:
        parent.chmod(0o755)
    assert_one_line_error(result, 74, str(parent / "run"))
    assert not (parent / "run").exists()
