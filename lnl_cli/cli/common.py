"""What every command shares: error mapping, overrides, progress rendering, output.

Results go to stdout (JSON with --json); progress, warnings and errors go to stderr.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape

from lnl_cli import api
from lnl_cli.api import PipeSafeConsole, StopRequest, TrainCallbacks
from lnl_cli.errors import (EXIT_INTERNAL, EXIT_IO, EXIT_SIGINT, EXIT_SIGTERM, LnlError, TrainingDiverged,
                            TrainingInterrupted)


def _current(stream: Any) -> Any:
    """The stream under rich's live-display proxy, if any."""
    return getattr(stream, "rich_proxied_file", stream)


def _park_fd(stream: Any) -> None:
    """Point a failed standard stream's file descriptor at /dev/null, so that Python's final flush of what
    is still buffered cannot fail again (and turn the exit code into 120)."""
    if stream is None or stream not in (sys.__stdout__, sys.__stderr__):
        return
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


class _StandardStream:
    """What rich asks of a file, answered from the standard stream underneath (`_stream`), and safe
    when that stream is closed."""

    def _stream(self) -> Any:
        raise NotImplementedError

    def isatty(self) -> bool:
        try:
            return bool(self._stream().isatty())
        except (AttributeError, OSError, ValueError):
            return False

    @property
    def encoding(self) -> str:
        try:
            return getattr(self._stream(), "encoding", None) or "utf-8"
        except OSError:
            return "utf-8"


class _ProgressStream(_StandardStream):
    """stderr for progress, warnings and errors: whatever sys.stderr is now (pytest, CliRunner and rich swap
    it), written until the first failure and never again. A closed pipe or a full disk on stderr must not
    stop training, so failed writes are dropped, silently: there is nowhere left to report them."""

    def __init__(self) -> None:
        self.failed = False

    def _stream(self) -> Any:
        return _current(sys.stderr)

    def write(self, text: str) -> int:
        if not self.failed:
            stream = self._stream()
            try:
                if stream is None:
                    raise OSError(errno.EBADF, "stderr is closed")
                stream.write(text)
            except (OSError, ValueError):
                self._give_up(stream)
        return len(text)

    def flush(self) -> None:
        if not self.failed:
            stream = self._stream()
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                self._give_up(stream)

    def _give_up(self, stream: Any) -> None:
        self.failed = True
        _park_fd(stream)



class _ResultStream(_StandardStream):
    """stdout for results: whatever sys.stdout is now; a closed stdout raises like a failed write does, so
    that :func:`result_output` reports it (rich alone would write into nothing and exit 0)."""

    def _stream(self) -> Any:
        stream = _current(sys.stdout)
        if stream is None:
            raise OSError(errno.EBADF, "stdout is closed")
        return stream

    def write(self, text: str) -> int:
        return self._stream().write(text)

    def flush(self) -> None:
        self._stream().flush()



result_stream = _ResultStream()
stderr = Console(file=_ProgressStream(), highlight=False)
stdout = PipeSafeConsole(file=result_stream, highlight=False)


def unlimited_width_stdout() -> Console:
    """stdout for a table off a terminal: as wide as the table needs, so that nothing in it is cut."""
    return PipeSafeConsole(file=result_stream, width=10_000, highlight=False)

PRESET_HELP = "Built-in preset name (see `lnl presets`) or path to a YAML preset."

# The parameters several commands share, declared once.
Overrides = Annotated[Optional[list[str]], typer.Argument(metavar="[KEY=VALUE]...", help="Config overrides.")]
SetValues = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", help="Override a config key, e.g. --set train.lr=0.02 (repeatable; bare key=value words work too).")]
DataRoot = Annotated[Optional[str], typer.Option(
    "--data-root", help="Folder holding MNIST/raw (same as --set data.root=...; default $LNL_DATA_ROOT).")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout and nothing else there.")]
CheckpointPath = Annotated[Path, typer.Option(
    "--checkpoint", "-c", help="A checkpoint written by `lnl train` (best.pt or last.pt), or its run folder (best.pt).")]
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


def write_stdout(text: str) -> None:
    """A command's result (text) on stdout; see :func:`result_output` for what happens when it cannot be written."""
    result_stream.write(text)
    result_stream.flush()


def print_json(data: Any) -> None:
    """Standard JSON only: a NaN or infinite number is written as null (see api.to_json)."""
    result_stream.write(api.to_json(data, indent=2) + "\n")
    result_stream.flush()


def _write_failure(exc: OSError) -> str:
    if exc.errno == errno.EBADF:
        return "stdout is closed"
    if exc.errno == errno.EPIPE:
        return "broken pipe (the reader has gone)"
    return (exc.strerror or str(exc)).lower() if exc.errno else str(exc)


@contextlib.contextmanager
def result_output(after_failure: str = "") -> Iterator[None]:
    """Writes of a command's result to stdout. A closed stdout, a broken pipe or a full disk is one
    ``Error:`` line on stderr (when it still works) and exit 74, whatever the command would have
    returned (for probe-bias: never 1, which means the gate failed)."""
    try:
        yield
        result_stream.flush()
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValueError) and "closed file" not in str(exc):
            raise  # a bug, not an unwritable stdout
        _park_fd(_current(sys.stdout))
        reason = _write_failure(exc) if isinstance(exc, OSError) else "stdout is closed"
        raise fail(f"cannot write the result to stdout: {reason}{after_failure}", EXIT_IO) from None


def show_warnings_as_lines() -> None:
    """Python warnings (the core's and libraries') as one ``warning:`` line each on stderr, every distinct
    message once, instead of Python's two-line format with a source line."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split()) or category.__name__
        if text not in seen:
            seen.add(text)
            stderr.print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=True)

    warnings.showwarning = show


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
    owner = os.getpid()

    def handler(signum, _frame):
        if os.getpid() != owner:
            return  # a forked DataLoader worker: the main process reports, stops and ends its workers
        if stop.signal_name is not None:
            if not escalate:
                return
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
        name = signal.Signals(signum).name
        code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
        stop.request(name, code)
        if not stop.armed:  # still loading data or building the model: nothing to save, stop now
            raise TrainingInterrupted(f"interrupted by {name} before training started; nothing was written", code)
        stderr.print(f"{name} received: finishing the current step and saving a checkpoint")

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def progress_callbacks() -> TrainCallbacks:
    """Bars at a terminal, lines and a heartbeat elsewhere (see lnl_cli/progress.py)."""
    return api.progress_callbacks(stderr)
