"""The training loop on real runs: signals mid-epoch and divergence."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from lnl_cli.checkpoint import load_checkpoint

from test_cli import assert_one_line_error, lnl


# ------------------------------------------------------------------ signals on a real run
@pytest.mark.mnist
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_epoch_saves_a_loadable_checkpoint_and_exits_with_its_code(tmp_path, mnist_root, sig, code):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "lnl_cli", "train", "--data-root", str(mnist_root), "--out", str(out),
         "data.train_size=4000", "data.test_size=500", "train.epochs=20", "train.pretrain_epochs=1",
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
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    assert checkpoint["epoch"] >= 1
    resumed = lnl("train", "--resume", str(out), "train.epochs=2", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs"] == 2


# ------------------------------------------------------------------ divergence
@pytest.mark.mnist
def test_divergence_exits_5_naming_the_loss_and_keeps_no_bad_checkpoint(tmp_path, mnist_root):
    out = tmp_path / "nan"
    result = lnl("train", "--data-root", str(mnist_root), "--out", str(out), "method=baseline", "train.lr=1e12",
                 "data.train_size=512", "data.test_size=100", "train.epochs=2", "train.num_threads=1")
    assert_one_line_error(result, 5, "label_loss", "epoch 1")
    assert not (out / "checkpoint.pt").exists()  # no finished epoch: nothing that looks valid


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
def test_a_signal_while_loading_data_exits_at_once_and_leaves_no_run_folder(tmp_path, sig, code):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", SLOW_DATA, "train", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr.readline().strip() == "loading data"
    started = time.time()
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)
    assert time.time() - started < 20  # not after the 120 s of loading
    assert process.returncode == code, stderr
    assert stdout == "" and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert lines == [f"Error: interrupted by {signal.Signals(sig).name} before training started; nothing was written"]
    assert not out.exists()
