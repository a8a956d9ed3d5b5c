"""N points at once (`lnl sweep --jobs N`): each an `lnl train` process of its own, watched from here.

Apart from the sweep's loop because processes bring their own concerns: each point runs in a session
of its own, so that a Ctrl-C at the terminal reaches only the sweep, which passes it on once; the
points die with the sweep however it ends; a point's stderr goes to its folder's train.log, whose
last `Error:` line becomes the point's error in sweep.json.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lnl_cli import run_folder
from lnl_cli.callbacks import SweepCallbacks
from lnl_cli.errors import EXIT_SIGINT, EXIT_SIGTERM, OutputError
from lnl_cli.fileio import output_errors, unshare
from lnl_cli.runtime import PARENT_PID_ENV, StopRequest, die_with_parent
from lnl_cli.sweep.document import end_point, finish_point, write_document
from lnl_cli.sweep.folders import RESUME
from lnl_cli.sweep.plan import FAILED, INTERRUPTED, Point, SweepPlan

POLL_SECONDS = 0.1     # how often running subprocesses are checked
STOP_GRACE_SECONDS = 600  # a point told to abandon its step (a second Ctrl-C) is killed if still running after this


def train_command(point: Point, preset: str) -> list[str]:
    """The `lnl train` that trains (or resumes) `point` in a process of its own."""
    base = [sys.executable, "-m", "lnl_cli", "train"]
    if point.action == RESUME:
        return base + ["--resume", str(point.run_dir),
                       *(f"{key}={json.dumps(value)}" for key, value in point.resume_overrides.items())]
    return base + ["--preset", preset, "--out", str(point.run_dir),
                   *itertools.chain.from_iterable(("--set", text) for text in point.overrides)]


@dataclass
class _Child:
    point: Point
    process: subprocess.Popen
    log: Path
    log_start: int
    forwarded: int = 0  # stop signals passed on so far


def run_processes(plan: SweepPlan, todo: list[Point], jobs: int, callbacks: SweepCallbacks,
                  stop: StopRequest) -> None:
    """`jobs` points at once, each an `lnl train` in its own session (so that a Ctrl-C at the terminal
    reaches only this process, which passes it on once: a second one would abandon their steps). The
    points die with this process, however it ends (``kill -9`` included): an orphan would train on beside
    the point a rerun of the sweep resumes."""
    total = len(plan.points)
    stop.armed = True  # a stop is passed on to the running points, which save and exit
    queue, running = list(todo), []
    try:
        while queue or running:
            while queue and len(running) < jobs and not stop.requested:
                running.append(_start(queue.pop(0), plan.preset))
                callbacks.on_point_start(running[-1].point, total, running[-1].log)
            if stop.requested:
                for child in running:
                    _forward(child, stop, first_only=True)
                queue.clear()
            for child in list(running):
                code = child.process.poll()
                if code is None:
                    continue
                running.remove(child)
                _collect(child, code)
                callbacks.on_point_end(child.point, total)
                write_document(plan, "running")
            if running:
                time.sleep(POLL_SECONDS)
    except BaseException:  # a second Ctrl-C, or a bug: end the points now, as a second Ctrl-C would
        for child in running:
            _abandon(child)
        for child in running:
            _collect(child, child.process.wait())
        raise


def _start(point: Point, preset: str) -> _Child:
    log = point.run_dir / run_folder.LOG_FILE
    with output_errors(log):
        point.run_dir.mkdir(parents=True, exist_ok=True)
        unshare(log)  # a hard-linked copy of a point's folder appends to its own log only
        handle = open(log, "ab")
    with handle:
        start = handle.tell()
        try:
            process = subprocess.Popen(train_command(point, preset), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=handle, start_new_session=True,
                                       env={**os.environ, PARENT_PID_ENV: str(os.getpid())},
                                       preexec_fn=functools.partial(die_with_parent, os.getpid()))
        except OSError as exc:
            raise OutputError(f"cannot start a process for point {point.name}: {exc.strerror or exc}") from None
    return _Child(point, process, log, start)


def _forward(child: _Child, stop: StopRequest, first_only: bool) -> None:
    if first_only and child.forwarded:
        return
    signum = signal.SIGINT if stop.exit_code == EXIT_SIGINT else signal.SIGTERM
    with contextlib.suppress(ProcessLookupError):
        child.process.send_signal(signum)
    child.forwarded += 1


def _abandon(child: _Child) -> None:
    """Stop a point's process at once: a second SIGINT (it abandons its step), then a kill if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        child.process.send_signal(signal.SIGINT)
        if child.forwarded == 0:
            time.sleep(POLL_SECONDS)
            child.process.send_signal(signal.SIGINT)
    try:
        child.process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.process.kill()


def _collect(child: _Child, code: int) -> None:
    point = child.point
    if code == 0:
        finish_point(point)
        return
    error = _last_error(child) or f"lnl train exited with {code}"
    if code < 0:  # killed by a signal
        error, code = f"lnl train was killed by {signal.Signals(-code).name}", 128 - code
    status = INTERRUPTED if code in (EXIT_SIGINT, EXIT_SIGTERM) else FAILED
    end_point(point, status, code, error)


def _last_error(child: _Child) -> str | None:
    """The `Error: ...` line this run of the point wrote to its log, without the prefix."""
    try:
        with open(child.log, "rb") as handle:
            handle.seek(child.log_start)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [line for line in text.splitlines() if line.startswith("Error:")]
    return lines[-1][len("Error:"):].strip() if lines else None
