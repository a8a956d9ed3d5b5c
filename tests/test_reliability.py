"""Signals, crashes mid-write, random config input, and every documented exit code."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lnl_cli.checkpoint import load_checkpoint
from lnl_cli.config import SPECS, Config, load_config
from lnl_cli.errors import ConfigError

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


# ------------------------------------------------------------------ SIGKILL while writing
WRITER = textwrap.dedent("""
    import sys, torch
    from lnl_cli.checkpoint import save_checkpoint
    path = sys.argv[1]
    save_checkpoint(path, {"format_version": 1, "config": {}, "task": {}, "model": {}, "epoch": 0})
    print("ready", flush=True)
    epoch = 1
    while True:
        payload = {"w": torch.randn(4_000_000)}
        save_checkpoint(path, {"format_version": 1, "config": {}, "task": {}, "model": payload, "epoch": epoch})
        epoch += 1
""")


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.7])
def test_sigkill_during_checkpoint_writes_leaves_a_valid_checkpoint(tmp_path, delay):
    path = tmp_path / "checkpoint.pt"
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    checkpoint = load_checkpoint(path)  # the old or the new file, never half of one
    assert checkpoint["format_version"] == 1


# ------------------------------------------------------------------ random config input
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.lists(st.lists(st.integers(-5, 300), max_size=4),
                                                                     max_size=11))
keys = st.one_of(st.sampled_from(sorted(SPECS)), st.text(min_size=1, max_size=15))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, max_size=6))
def test_random_overrides_give_a_valid_config_or_a_config_error(overrides):
    try:
        config = load_config("colored-mnist", overrides)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(config, Config)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=30), max_size=5))
def test_random_override_strings_give_a_valid_config_or_a_config_error(words):
    try:
        load_config("colored-mnist", words)
    except ConfigError as exc:
        assert str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=200), st.dictionaries(st.text(max_size=10), values, max_size=5).map(yaml.safe_dump)))
def test_random_preset_files_give_a_valid_config_or_a_config_error(tmp_path, text):
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc)


# ------------------------------------------------------------------ the remaining exit codes
@pytest.mark.mnist
def test_divergence_exits_5_naming_the_loss_and_keeps_no_bad_checkpoint(tmp_path, mnist_root):
    out = tmp_path / "nan"
    result = lnl("train", "--data-root", str(mnist_root), "--out", str(out), "method=baseline", "train.lr=1e12",
                 "data.train_size=512", "data.test_size=100", "train.epochs=2", "train.num_threads=1")
    assert_one_line_error(result, 5, "label_loss", "epoch 1")
    assert not (out / "checkpoint.pt").exists()  # no finished epoch: nothing that looks valid


def test_an_unexpected_failure_is_exit_70_without_a_traceback(monkeypatch):
    from lnl_cli import api
    from lnl_cli.cli import app

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(api, "load_config", broken)
    monkeypatch.delenv("LNL_DEBUG", raising=False)
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 70
    assert "internal error: RuntimeError: boom" in result.output and "Traceback" not in result.output


def test_usage_errors_exit_2():
    assert lnl("train", "--no-such-flag").returncode == 2
    assert lnl("train", "--resume", "x", "--preset", "colored-mnist").returncode == 2
