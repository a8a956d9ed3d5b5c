"""Progress on stderr: short epoch lines and a heartbeat in logs, silence (not a crash) on a broken stderr."""

from __future__ import annotations

import io

from rich.console import Console

from lnl_cli import progress
from lnl_cli.progress import PipeSafeConsole
from lnl_cli.progress import PlainProgress, RichProgress

INFO = {"method": "lnl", "dataset": "toy [x]", "train_size": 1000, "test_size": 100, "device": "cpu",
        "run_dir": "runs/a[b]", "epochs": 3, "start_epoch": 0}
RECORD = {"epoch": 1, "phase": "warm-up", "label_loss": 0.5, "val_accuracy": 0.75, "val_bias_head_accuracy": None,
          "train_seconds": 1.0, "seconds": 1.25}


def _plain(heartbeat: float) -> tuple[PlainProgress, io.StringIO]:
    out = io.StringIO()
    return PlainProgress(Console(file=out, width=300, color_system=None), heartbeat=heartbeat), out


def test_plain_progress_prints_a_short_line_per_epoch_with_user_strings_verbatim():
    callbacks, out = _plain(heartbeat=0)
    callbacks.on_status("loading data")
    callbacks.on_start(INFO)
    callbacks.on_epoch_start(0, 3, "warm-up", 10)
    for step in range(1, 11):
        callbacks.on_steps(step, 10)
    callbacks.on_epoch_end(RECORD)
    lines = out.getvalue().splitlines()
    assert lines[0] == "loading data…"
    assert "toy [x]" in lines[1] and "runs/a[b]" in lines[1]  # markup-like text printed as it is
    assert lines[2] == "epoch 1/3 warm-up  loss 0.5000  val_acc 0.7500  (1.2s)"
    assert len(lines) == 3  # no heartbeat when it is off


def test_heartbeat_lines_come_at_most_every_n_seconds(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    callbacks, out = _plain(heartbeat=20)
    callbacks.on_start(INFO)
    callbacks.on_epoch_start(0, 3, "warm-up", 100)
    callbacks.on_losses({"label_loss": 1.25})
    for step in range(1, 13):
        now[0] += 7.0
        callbacks.on_steps(step, 100)
    beats = [line for line in out.getvalue().splitlines() if line.startswith("  epoch")]
    assert len(beats) == 4, beats  # 12 steps, 7 s apart: at 21, 42, 63 and 84 s (gaps >= 20 s)
    assert "loss 1.2500" in beats[0] and "img/s" in beats[0] and "epoch eta" in beats[0]


def test_a_broken_stderr_is_tried_once_and_never_raises():
    class Broken(io.StringIO):
        writes = 0

        def write(self, text):
            Broken.writes += 1
            raise BrokenPipeError(32, "Broken pipe")

    callbacks = PlainProgress(PipeSafeConsole(file=Broken()), heartbeat=0)
    callbacks.on_start(INFO)
    callbacks.on_epoch_start(0, 3, "warm-up", 10)
    callbacks.on_epoch_end(RECORD)
    callbacks.on_message("still training")
    assert callbacks.broken and Broken.writes == 1


def test_rich_progress_runs_and_leaves_nothing_on_screen_when_closed():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    callbacks = RichProgress(console)
    callbacks.on_status("loading data")
    callbacks.on_start(INFO)
    callbacks.on_epoch_start(0, 3, "warm-up", 4)
    for step in range(1, 5):
        callbacks.on_steps(step, 4)
    callbacks.on_losses({"label_loss": 0.5})
    callbacks.on_epoch_end(RECORD)
    callbacks.close()
    assert "epoch 1/3 warm-up" in out.getvalue()
    assert not callbacks.progress.live.is_started
