"""Training progress for people: live bars on a terminal or in a notebook, short lines and a
heartbeat in logs. Used by the CLI (on stderr) and by :func:`lnl_cli.api.train` in notebooks.

Progress must never stop training: a stderr that is closed or full (``lnl train 2>&1 | head``) is
written to once, then left alone.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lnl_cli.callbacks import TrainCallbacks
from lnl_cli.metric_names import (ACCURACY, ALIGNED_ACCURACY, BIAS_HEAD_ACCURACY, CONFLICTING_ACCURACY,
                             WORST_GROUP_ACCURACY)
from lnl_cli.selection import VAL_PREFIX

HEARTBEAT_ENV = "LNL_HEARTBEAT_SECONDS"
DEFAULT_HEARTBEAT_SECONDS = 30.0
REFRESH_PER_SECOND = 4
# Short names for the metrics people watch (each method's losses bring theirs: see short_names); anything
# else keeps its own name.
METRIC_SHORT_NAMES = {**{VAL_PREFIX + metric: short for metric, short in (
                   (ACCURACY, "val_acc"), (ALIGNED_ACCURACY, "aligned"), (CONFLICTING_ACCURACY, "conflicting"),
                   (WORST_GROUP_ACCURACY, "worst"), (BIAS_HEAD_ACCURACY, "h_acc"))}}
NOT_SHOWN = frozenset({"epoch", "phase", "seconds", "train_seconds"})


class PipeSafeConsole(Console):
    """rich's Console, except on a broken pipe: rich's default points stdout at /dev/null and raises
    SystemExit(1), which would end a training run because its log reader went away (and make probe-bias
    exit 1, "gate failed"). Here the write fails with BrokenPipeError, for the caller to handle: progress
    stops writing, a command's result becomes exit 74."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def heartbeat_seconds() -> float:
    """$LNL_HEARTBEAT_SECONDS (0 turns the heartbeat off), else 30 s."""
    try:
        return max(0.0, float(os.environ.get(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_SECONDS)))
    except ValueError:
        return DEFAULT_HEARTBEAT_SECONDS


@functools.cache
def short_names() -> dict[str, str]:
    """Every registered method's losses and the validation metrics, by short name. Read from the method
    registry at the first progress line (importing it loads torch, which `lnl --version` must not)."""
    from lnl_cli.algorithms import loss_names

    return {**loss_names(), **METRIC_SHORT_NAMES}


def short_name(key: str) -> str:
    """The displayed name of a record key; a check inside an epoch (val_accuracy@step107) keeps its step."""
    name, at, step = key.partition("@")
    return short_names().get(name, name) + at + step


def format_values(values: dict[str, Any]) -> str:
    """`loss 0.412  acc 0.8123 …`: losses and metrics, four decimals, None skipped."""
    parts = [f"{short_name(k)} {v:.4f}" if isinstance(v, float) else f"{short_name(k)} {v}"
             for k, v in values.items() if k not in NOT_SHOWN and v is not None]
    return "  ".join(parts)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class PlainProgress(TrainCallbacks):
    """For logs, pipes and CI: a line per epoch, and inside long epochs a heartbeat line at most every
    `heartbeat` seconds, so that a job watching for output never sees a silent minute."""

    def __init__(self, console: Console, heartbeat: float | None = None):
        self.console = console
        self.heartbeat = heartbeat_seconds() if heartbeat is None else heartbeat
        self.broken = False
        self.train_size = 0
        self.epochs = 0
        self.epoch_started = self.last_beat = time.monotonic()
        self.losses: dict[str, float] = {}

    def emit(self, text: str) -> None:
        """One line on stderr; after a failed write (closed or full stderr) nothing more is tried."""
        if self.broken:
            return
        try:
            self.console.print(text, soft_wrap=True, highlight=False)
        except (OSError, ValueError):
            self.broken = True

    def on_status(self, text: str) -> None:
        self.emit(escape(f"{text}…"))

    def on_start(self, info: dict[str, Any]) -> None:
        self.train_size, self.epochs = info["train_size"], info["epochs"]
        resuming = f", resuming at epoch {info['start_epoch'] + 1}" if info.get("start_epoch") else ""
        val = f"{info['val_size']} validation / " if info.get("val_size") else "no validation split / "
        self.emit(escape(f"training {info['method']} on {info['dataset']} ({info['train_size']} train / {val}"
                         f"{info['test_size']} test images) on {info['device']} -> {info['run_dir']}{resuming}"))

    def on_epoch_start(self, epoch: int, epochs: int, phase: str, steps: int) -> None:
        self.epoch, self.phase, self.steps = epoch, phase, steps
        self.epoch_started = self.last_beat = time.monotonic()
        self.losses = {}

    def on_losses(self, losses: dict[str, float]) -> None:
        self.losses = losses

    def images_per_second(self, done: int) -> float:
        elapsed = time.monotonic() - self.epoch_started
        return self.train_size * done / max(self.steps, 1) / elapsed if elapsed > 0 else 0.0

    def on_steps(self, done: int, steps: int) -> None:
        now = time.monotonic()
        if not self.heartbeat or now - self.last_beat < self.heartbeat or done >= steps:
            return
        self.last_beat = now
        rate = self.images_per_second(done)
        eta = (now - self.epoch_started) * (steps - done) / done
        parts = [f"  epoch {self.epoch + 1}/{self.epochs} step {done}/{steps} ({100 * done // steps}%)",
                 f"{rate:,.0f} img/s", format_values(self.losses), f"epoch eta {format_duration(eta)}"]
        self.emit(escape("  ".join(part for part in parts if part)))

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.emit(escape(f"epoch {record['epoch']}/{self.epochs} {record['phase']}  {format_values(record)}  "
                         f"({record['seconds']:.1f}s)"))

    def on_message(self, text: str) -> None:
        self.emit(f"[yellow]warning:[/] {escape(text)}")


class RichProgress(PlainProgress):
    """For people at a terminal: a bar for the whole run and one for the epoch, with images/s, ETA and
    the running losses, redrawn four times a second; epoch lines scroll above them. The bars vanish when
    the run ends or is interrupted, so what follows starts on a clean line."""

    def __init__(self, console: Console):
        super().__init__(console, heartbeat=0)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), TextColumn("{task.fields[losses]}"), console=console,
                                 transient=True, refresh_per_second=REFRESH_PER_SECOND)
        self.status = None
        self.run_task = self.epoch_task = None

    def on_status(self, text: str) -> None:
        self.status = self.console.status(escape(f"{text}…"))
        self.status.start()

    def _stop_status(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def on_start(self, info: dict[str, Any]) -> None:
        self._stop_status()
        super().on_start(info)
        start = info.get("start_epoch", 0)
        self.progress.start()
        self.run_task = self.progress.add_task("run", total=info["epochs"], completed=start, rate="", losses="")

    def on_epoch_start(self, epoch: int, epochs: int, phase: str, steps: int) -> None:
        super().on_epoch_start(epoch, epochs, phase, steps)
        if self.epoch_task is not None:
            self.progress.remove_task(self.epoch_task)
        self.epoch_task = self.progress.add_task(escape(f"epoch {epoch + 1}/{epochs} {phase}"), total=steps,
                                                 rate="", losses="")

    def on_steps(self, done: int, steps: int) -> None:
        rate = f"{self.images_per_second(done):,.0f} img/s"
        self.progress.update(self.epoch_task, completed=done, rate=rate, losses=escape(format_values(self.losses)))
        self.progress.update(self.run_task, completed=self.epoch + done / max(steps, 1))

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.progress.update(self.run_task, completed=record["epoch"])
        super().on_epoch_end(record)

    def close(self) -> None:
        self._stop_status()
        self.progress.stop()


def progress_callbacks(console: Console) -> TrainCallbacks:
    """Bars where someone watches (a terminal, a notebook), lines and a heartbeat elsewhere."""
    return RichProgress(console) if console.is_terminal or console.is_jupyter else PlainProgress(console)


def in_notebook() -> bool:
    """Running inside a Jupyter/IPython kernel, where a Python call's progress should show by default."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
