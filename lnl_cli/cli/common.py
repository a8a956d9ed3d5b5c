"""What every command shares: error mapping, overrides, progress rendering, output.

Results go to stdout (JSON with --json); progress, warnings and errors go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lnl_cli import api
from lnl_cli.api import StopRequest, TrainCallbacks
from lnl_cli.errors import EXIT_INTERNAL, EXIT_SIGINT, EXIT_SIGTERM, LnlError, TrainingDiverged, TrainingInterrupted

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)

PRESET_HELP = "Built-in preset name (see `lnl presets`) or path to a YAML preset."

# The parameters several commands share, declared once.
Overrides = Annotated[Optional[list[str]], typer.Argument(metavar="[KEY=VALUE]...", help="Config overrides.")]
SetValues = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", help="Override a config key, e.g. --set train.lr=0.02 (repeatable; bare key=value words work too).")]
DataRoot = Annotated[Optional[str], typer.Option(
    "--data-root", help="Folder holding MNIST/raw (same as --set data.root=...; default $LNL_DATA_ROOT).")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout and nothing else there.")]
CheckpointPath = Annotated[Path, typer.Option("--checkpoint", "-c", help="checkpoint.pt written by `lnl train`.")]
OverlayPreset = Annotated[Optional[str], typer.Option(
    "--preset", "-p", help="Preset applied over the checkpoint's own config.")]


def fail(message: str, code: int) -> typer.Exit:
    where = f"rank {api.rank()}: " if api.launched_by_torchrun() and not api.is_main_process() else ""
    stderr.print(f"[bold red]Error:[/] {escape(where + message)}", soft_wrap=True)
    return typer.Exit(code)


# Stops every process agrees on: rank 0 reports them, the other ranks exit with the same code quietly.
AGREED_STOPS = (TrainingInterrupted, TrainingDiverged)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Map the project's errors to one line on stderr and their exit code; LNL_DEBUG=1 shows tracebacks."""
    try:
        yield
    except typer.Exit:
        raise
    except LnlError as exc:
        if os.environ.get("LNL_DEBUG"):
            raise
        if isinstance(exc, AGREED_STOPS) and not api.is_main_process():
            raise typer.Exit(exc.exit_code) from None
        raise fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_SIGINT) from None
    except Exception as exc:  # a bug, not a user error: say so, briefly
        if os.environ.get("LNL_DEBUG"):
            raise
        raise fail(f"internal error: {type(exc).__name__}: {exc} (set LNL_DEBUG=1 for a traceback)",
                   EXIT_INTERNAL) from None


def collect_overrides(set_values: list[str] | None, extra: list[str] | None,
                      data_root: str | None = None) -> list[str]:
    overrides = list(set_values or []) + list(extra or [])
    if data_root is not None:
        overrides.append(f"data.root={json.dumps(data_root)}")
    return overrides


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@contextlib.contextmanager
def graceful_stop() -> Iterator[StopRequest]:
    """First SIGINT/SIGTERM asks the loop to stop at a step boundary and save; a second SIGINT aborts.

    Under torchrun a Ctrl-C reaches each worker twice (from the terminal and forwarded by the agent),
    so there repeats are ignored: the agent itself kills workers that outlast its shutdown timeout."""
    stop = StopRequest()
    previous = {}
    escalate = not api.launched_by_torchrun()

    def handler(signum, _frame):
        if stop.signal_name is not None:
            if not escalate:
                return
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
        name = signal.Signals(signum).name
        stop.request(name, EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM)
        stderr.print(f"{name} received: finishing the current step and saving a checkpoint")

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class PlainProgress(TrainCallbacks):
    """One line per epoch: for logs and pipes. Remembers the run folder the run announced."""

    run_dir: str | None = None

    def on_start(self, info: dict[str, Any]) -> None:
        self.run_dir = info["run_dir"]
        stderr.print(f"training {info['method']} on {info['dataset']} ({info['train_size']} train / "
                     f"{info['test_size']} test images) on {info['device']} -> {info['run_dir']}"
                     + (f", resuming at epoch {info['start_epoch'] + 1}" if info.get("start_epoch") else ""),
                     soft_wrap=True)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        skip = {"epoch", "phase", "seconds", "train_seconds"}
        parts = [f"{k}={fmt(v)}" for k, v in record.items() if k not in skip and v is not None]
        stderr.print(escape(f"epoch {record['epoch']} [{record['phase']}] " + " ".join(parts)
                            + f" ({record['seconds']:.1f}s)"), soft_wrap=True)

    def on_message(self, text: str) -> None:
        stderr.print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=True)


class RichProgress(PlainProgress):
    """A live progress bar per epoch, for people at a terminal."""

    def __init__(self) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=stderr, transient=True)
        self.task = None

    def on_epoch_start(self, epoch: int, epochs: int, phase: str, steps: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task(escape(f"epoch {epoch + 1}/{epochs} [{phase}]"), total=steps)

    def on_steps(self, done: int, steps: int) -> None:
        self.progress.update(self.task, completed=done)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.progress.stop()
        if self.task is not None:
            self.progress.remove_task(self.task)
        super().on_epoch_end(record)


def progress_callbacks() -> PlainProgress:
    return RichProgress() if stderr.is_terminal else PlainProgress()
