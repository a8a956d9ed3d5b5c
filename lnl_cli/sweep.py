"""`lnl sweep`: many runs from one grid of config values, each an ordinary run folder.

    DIR/
      sweep.json                 the points, their overrides, folders, status and results (the last sweep run here)
      .lnl-sweep.lock            held (flock) while a sweep runs into DIR: one sweep per folder at a time
      <name>-<method>-<k><v>...  one run folder per point, as `lnl train --out` writes it

The grid is the Cartesian product of ``KEY=V1,V2,...`` axes; each value is read like a ``key=value``
override, and a value may be a bracketed list (``data.mean=[0.5,0.5,0.5],[0.4,0.4,0.4]``). Every point's
config and folder is checked before anything trains, and all problems of all points are one
ConfigError. A point whose folder holds a finished run of the same config is skipped, one with a
checkpoint but no summary is resumed, one whose folder holds another config is an error.

Points run one after another in this process (through the `train` and `resume` functions the caller
passes: the api's), or N at once as `lnl train` subprocesses. Nothing here prints or exits: progress goes
to a :class:`SweepCallbacks`, failures are the project's exceptions.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from lnl_cli import config as config_module
from lnl_cli import run_folder
from lnl_cli.callbacks import SweepCallbacks
from lnl_cli.config import SPECS, Config, get_value
from lnl_cli.engine import check_before_training
from lnl_cli.errors import (EXIT_CHECKPOINT, EXIT_INTERNAL, EXIT_SIGINT, EXIT_SIGTERM, ConfigError, LnlError,
                            OutputError, PointsFailed, TrainingInterrupted, shown)
from lnl_cli.fileio import atomic_write_json, output_errors, unshare
from lnl_cli.result_keys import RESULT_NEUTRAL_KEYS
from lnl_cli.runtime import PARENT_PID_ENV, StopRequest, die_with_parent
from lnl_cli.version import JSON_SCHEMA_VERSION

SWEEP_FILE = run_folder.SWEEP_FILE
LOCK_FILE = ".lnl-sweep.lock"
# Keys already in every folder name (<name>-<method>-...), so not repeated after it.
NAMED_KEYS = ("name", "method")
MAX_FOLDER_NAME = 255  # bytes, what file systems allow
POINTS_NAMED = 3       # points named in a problem shared by several
POLL_SECONDS = 0.1     # how often running subprocesses are checked
STOP_GRACE_SECONDS = 600  # a point told to abandon its step (a second Ctrl-C) is killed if still running after this

TRAIN, RESUME, SKIP = "train", "resume", "skip"
PENDING, FINISHED, FAILED, INTERRUPTED = "pending", "finished", "failed", "interrupted"


# ---------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Axis:
    """One --grid KEY=V1,V2,...: the key and each value as typed (read like a ``key=value`` override)."""

    key: str
    texts: tuple[str, ...]


def split_values(text: str) -> list[str]:
    """`text` split at the commas outside brackets, braces and quotes: ``0.1,[1,2],'a,b'`` is three values.
    ValueError when a bracket or quote is left open or closed too often."""
    values, current, depth, quote, escaped = [], [], 0, None, False
    for char in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"'{char}' closes a bracket that was not opened")
        elif char == "," and depth == 0:
            values.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote is not None:
        raise ValueError(f"a {quote} quote is not closed")
    if depth:
        raise ValueError("a bracket is not closed")
    values.append("".join(current))
    return values


def parse_grid(texts: Iterable[str]) -> tuple[list[Axis], list[str]]:
    """The axes of ``KEY=V1,V2,...`` texts, and the problems found (all of them, not the first)."""
    axes: list[Axis] = []
    problems: list[str] = []
    for text in texts:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"--grid {shown(text)} is not of the form KEY=V1,V2,...")
            continue
        try:
            values = [value.strip() for value in split_values(raw)]
        except ValueError as exc:
            problems.append(f"--grid {key}: {exc} in {shown(raw)}")
            continue
        if any(not value for value in values):
            problems.append(f"--grid {key}: empty value in {shown(raw)} (give V1,V2,...; null for no value)")
            continue
        axes.append(Axis(_canonical(key), tuple(values)))
    return axes, problems


def _canonical(key: str) -> str:
    return config_module.LEGACY_KEYS.get(key, key)


def _override_key(text: str) -> str | None:
    key, sep, _ = text.partition("=")
    return _canonical(key.strip()) if sep and key.strip() else None


def _duplicate_keys(axes: list[Axis], set_values: list[str]) -> list[str]:
    problems = []
    seen: set[str] = set()
    for axis in axes:
        if axis.key in seen:
            problems.append(f"--grid {axis.key} is given twice; give all its values in one --grid {axis.key}=V1,V2,...")
        seen.add(axis.key)
    fixed = {key for key in map(_override_key, set_values) if key is not None}
    problems += [f"{key} is both a --grid axis and a fixed value (--set); give it once"
                 for key in sorted(seen & fixed)]
    return problems


# ---------------------------------------------------------------------------- the plan


@dataclass
class Point:
    """One grid point: its folder, its config, and what the sweep will do with it."""

    index: int                      # 0-based, in grid order (first axis outermost)
    name: str                       # its folder's name
    run_dir: Path
    values: dict[str, Any]          # grid key -> the config's value
    overrides: list[str]            # every override of its `lnl train`: the fixed ones, then the grid's
    config: Config
    action: str = TRAIN             # train, resume or skip
    resume_overrides: dict[str, Any] = field(default_factory=dict)  # runtime keys asked otherwise than stored
    status: str = PENDING
    error: str | None = None
    exit_code: int | None = None
    result: dict[str, Any] | None = None


@dataclass
class SweepPlan:
    preset: str
    axes: list[Axis]
    set_values: list[str]
    out_dir: Path
    points: list[Point]
    jobs: int = 1


def plan_sweep(preset: str, grid: Iterable[str], set_values: Iterable[str] = (),
               out_dir: str | Path | None = None, jobs: int = 1) -> SweepPlan:
    """Every point of the grid, validated, named and classified (train, resume, skip); one ConfigError
    listing every problem of every point when anything is wrong. Writes nothing."""
    set_values = list(set_values)
    axes, problems = parse_grid(grid)
    problems += _duplicate_keys(axes, set_values)
    if problems:
        raise ConfigError(problems)
    out = Path(out_dir) if out_dir is not None else run_folder.RUNS_FOLDER
    if not str(out).strip():
        raise ConfigError("the sweep folder (--out) is empty, which would mean the current folder; name a folder")
    combos = list(itertools.product(*(axis.texts for axis in axes)))
    configs: list[Config | None] = []
    failures: dict[str, list[tuple[str, ...]]] = {}
    for combo in combos:
        overrides = set_values + [f"{axis.key}={text}" for axis, text in zip(axes, combo)]
        config: Config | None = None
        try:
            config = config_module.load_config(preset, overrides)
            check_before_training(config)  # what `lnl train --dry-run` refuses is refused here too
        except ConfigError as exc:
            config = None
            for problem in exc.problems:
                failures.setdefault(problem, []).append(combo)
        configs.append(config)
    if failures:
        raise ConfigError([_where(problem, where, axes, len(combos)) for problem, where in failures.items()])
    points = [_point(index, axes, combo, set_values, config, out)
              for index, (combo, config) in enumerate(zip(combos, configs))]
    problems = _name_problems(points)
    if problems:
        raise ConfigError(problems)
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    plan = SweepPlan(preset, axes, set_values, out, points, jobs)
    classify(plan)
    return plan


def _label(axes: list[Axis], combo: tuple[str, ...]) -> str:
    return ", ".join(f"{axis.key}={text}" for axis, text in zip(axes, combo)) or "the only point"


def _where(problem: str, combos: list[tuple[str, ...]], axes: list[Axis], total: int) -> str:
    """A problem, with the points it concerns when not all of them: the axis values they share when
    exactly the points with those values have it (``points with seed=x``), else their list."""
    if len(combos) == total:
        return problem
    shared = [(i, combos[0][i]) for i in range(len(axes))
              if len(axes[i].texts) > 1 and len({combo[i] for combo in combos}) == 1]
    matching = total
    for i, _ in shared:
        matching //= len(axes[i].texts)
    if shared and matching == len(combos):
        return f"{problem} (points with {', '.join(f'{axes[i].key}={text}' for i, text in shared)})"
    labels = [_label(axes, combo) for combo in combos]
    named = "; ".join(labels[:POINTS_NAMED]) + (f"; and {len(labels) - POINTS_NAMED} more"
                                                 if len(labels) > POINTS_NAMED else "")
    return f"{problem} (point {named})" if len(labels) == 1 else f"{problem} ({len(labels)} points: {named})"


def _point(index: int, axes: list[Axis], combo: tuple[str, ...], set_values: list[str], config: Config,
           out: Path) -> Point:
    values = {axis.key: get_value(config, axis.key) for axis in axes}
    name = folder_name(config, axes, values)
    overrides = set_values + [f"{axis.key}={text}" for axis, text in zip(axes, combo)]
    return Point(index, name, out / name, values, overrides, config)


def folder_name(config: Config, axes: list[Axis], values: dict[str, Any]) -> str:
    """``<name>-<method>`` then ``-<key><value>`` per axis (name and method are in the prefix already);
    a key is its last dotted part unless two axes share it. Characters a folder name should not hold
    become '-'."""
    shown_axes = [axis.key for axis in axes if axis.key not in NAMED_KEYS]
    short = [key.rsplit(".", 1)[-1] for key in shown_axes]
    parts = [f"{config.name}-{config.method}"]
    for key, tail in zip(shown_axes, short):
        label = tail if short.count(tail) == 1 else key
        parts.append(re.sub(r"[^A-Za-z0-9._-]+", "-", f"{label}{_value_text(values[key])}"))
    return "-".join(parts)


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "_".join(_value_text(item) for item in value) if value else "empty"
    return str(value)


def _name_problems(points: list[Point]) -> list[str]:
    problems = []
    by_name: dict[str, list[Point]] = {}
    for point in points:
        by_name.setdefault(point.name, []).append(point)
        if len(point.name.encode()) > MAX_FOLDER_NAME:
            problems.append(f"the folder name of point {_values_text(point)} is longer than {MAX_FOLDER_NAME} "
                            "bytes; use shorter values or fewer axes")
    for name, same in by_name.items():
        if len(same) > 1:
            problems.append(f"points {' and '.join(_values_text(p) for p in same[:POINTS_NAMED])} would share the "
                            f"folder {name} (their values are equal, or equal once made a folder name)")
    return problems


def _values_text(point: Point) -> str:
    return ", ".join(f"{key}={shown(value)}" for key, value in point.values.items()) or point.name


# ---------------------------------------------------------------------------- what each folder holds


def classify(plan: SweepPlan) -> None:
    """Decide each point's action from its folder: train (nothing there yet), resume (a checkpoint, no
    summary), skip (a finished run of the same config); ConfigError listing every folder that holds a
    run of another config or cannot be used."""
    problems = []
    for point in plan.points:
        try:
            _classify(point)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)


def _classify(point: Point) -> None:
    folder = point.run_dir
    point.status, point.result, point.error, point.exit_code, point.resume_overrides = PENDING, None, None, None, {}
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"point {point.name}: {folder} is a file")
    if run_folder.in_use(folder):
        raise ConfigError(f"point {point.name}: {folder} is in use: an lnl process is training in it (a run "
                          "started outside this sweep, or a point of another one); wait for it or stop it")
    finished = (folder / run_folder.SUMMARY_FILE).exists()
    checkpoint = run_folder.resume_checkpoint(folder).exists()
    if not finished and not checkpoint:
        if run_folder.metrics_path(folder).exists():
            raise ConfigError(f"point {point.name}: {folder} holds metrics but no checkpoint (a run that never "
                              "saved one); remove the folder to train this point again")
        point.action = TRAIN
        return
    stored = _stored_config(point)
    # A finished point stored with other values of RESULT_NEUTRAL_KEYS is still the same point, and a
    # resumed one takes the values asked now (they are RESUME_SAFE_KEYS too, by their definition).
    differ = [key for key in SPECS
              if key not in RESULT_NEUTRAL_KEYS and get_value(stored, key) != get_value(point.config, key)]
    if differ:
        what = "a finished run" if finished else "an unfinished run"
        details = ", ".join(f"{key}={shown(get_value(stored, key))} there, {shown(get_value(point.config, key))} asked"
                            for key in differ[:POINTS_NAMED])
        more = f" and {len(differ) - POINTS_NAMED} more" if len(differ) > POINTS_NAMED else ""
        raise ConfigError(f"point {point.name}: {folder} holds {what} of another config ({details}{more}); "
                          "remove that folder or sweep into another --out")
    if finished:
        point.action, point.status = SKIP, FINISHED
        point.result = point_result(run_folder.read_summary(folder))
        return
    point.action = RESUME
    point.resume_overrides = {key: get_value(point.config, key) for key in sorted(RESULT_NEUTRAL_KEYS)
                              if get_value(stored, key) != get_value(point.config, key)}


def _stored_config(point: Point) -> Config:
    tree = run_folder.read_config_tree(point.run_dir)
    path = point.run_dir / run_folder.CONFIG_FILE
    if not tree:
        raise ConfigError(f"point {point.name}: {path} is missing or unreadable, so the run there cannot be "
                          "checked against this point; remove the folder to train it again")
    try:
        return config_module.from_dict(tree)
    except ConfigError as exc:
        raise ConfigError(f"point {point.name}: {path} is not a valid config ({exc})") from None


def point_result(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """What sweep.json keeps of a run's summary.json: its test metrics, selected epoch and training time."""
    if not isinstance(summary, dict):
        return None
    test = summary.get("test") if isinstance(summary.get("test"), dict) else {}
    selected = summary.get("selected") if isinstance(summary.get("selected"), dict) else {}
    return {"accuracy": test.get("accuracy"), "aligned_accuracy": test.get("aligned_accuracy"),
            "conflicting_accuracy": test.get("conflicting_accuracy"),
            "worst_group_accuracy": test.get("worst_group_accuracy"), "selected_epoch": selected.get("epoch"),
            "seconds": summary.get("train_seconds", summary.get("seconds"))}


# ---------------------------------------------------------------------------- sweep.json


def document(plan: SweepPlan, status: str) -> dict[str, Any]:
    """sweep.json: the sweep (preset, fixed overrides, grid, folder) and every point."""
    counts = {name: sum(point.status == name for point in plan.points)
              for name in (FINISHED, FAILED, INTERRUPTED, PENDING)}
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "status": status,
        "preset": plan.preset,
        "set": list(plan.set_values),
        "grid": {axis.key: list(axis.texts) for axis in plan.axes},
        "out": str(plan.out_dir),
        "jobs": plan.jobs,
        "counts": counts,
        "points": [{"name": point.name, "run_dir": str(point.run_dir), "values": point.values,
                    "overrides": point.overrides, "action": point.action, "status": point.status,
                    "exit_code": point.exit_code, "error": point.error, "result": point.result}
                   for point in plan.points],
    }


def write_document(plan: SweepPlan, status: str) -> dict[str, Any]:
    data = document(plan, status)
    path = plan.out_dir / SWEEP_FILE
    with output_errors(path):
        atomic_write_json(path, data)
    return data


def _write_quietly(plan: SweepPlan, status: str) -> None:
    """sweep.json while another error is on its way to the user: that error wins over a failed write."""
    with contextlib.suppress(OutputError):
        write_document(plan, status)


@contextlib.contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Hold DIR/.lnl-sweep.lock for the sweep: a second sweep into DIR is refused while this one runs.
    The lock is the kernel's (flock): it goes with the process, however it ends."""
    path = out_dir / LOCK_FILE
    with output_errors(path):
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            raise ConfigError(f"another lnl sweep is running into {out_dir}" + (f" (pid {holder})" if holder else "")
                              + "; wait for it, or give this sweep its own --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


# ---------------------------------------------------------------------------- running


# Trains one point in this process: (point, stop) -> the run's summary. The api passes one that calls
# its train and resume, so that a point's folder is exactly what `lnl train` writes.
PointRunner = Callable[[Point, StopRequest], dict[str, Any]]


def run_sweep(plan: SweepPlan, run_here: PointRunner, callbacks: SweepCallbacks | None = None,
              stop: StopRequest | None = None) -> dict[str, Any]:
    """Train every point not finished yet: in this process one after another (plan.jobs 1), or plan.jobs
    at once as `lnl train` subprocesses. sweep.json is written before the first point and after each.

    Returns sweep.json's content when every point finished. A failed point does not stop the others:
    PointsFailed (the first failed point's exit code) comes at the end. A stop request (Ctrl-C) stops
    starting points, lets the running ones save their checkpoints, and is a TrainingInterrupted."""
    jobs = plan.jobs
    callbacks = callbacks or SweepCallbacks()
    stop = stop or StopRequest()
    with locked(plan.out_dir):
        classify(plan)  # again, now that no other sweep can change the folders
        write_document(plan, "running")
        total = len(plan.points)
        for point in plan.points:
            if point.action == SKIP:
                callbacks.on_point_end(point, total)
        todo = [point for point in plan.points if point.action != SKIP]
        try:
            if jobs == 1:
                _run_here(plan, todo, run_here, callbacks, stop)
            else:
                _run_processes(plan, todo, jobs, callbacks, stop)
        except TrainingInterrupted:  # a stop between points, before the next one started training
            _write_quietly(plan, INTERRUPTED)
            raise _interrupted(plan, stop) from None
        except BaseException:
            _write_quietly(plan, INTERRUPTED)
            raise
        if stop.requested:
            write_document(plan, INTERRUPTED)
            raise _interrupted(plan, stop)
        failed = [point for point in plan.points if point.status in (FAILED, INTERRUPTED)]
        data = write_document(plan, FAILED if failed else FINISHED)
    if failed:
        raise _failed(plan, failed)
    return data


def _run_here(plan: SweepPlan, todo: list[Point], run_here: PointRunner, callbacks: SweepCallbacks,
              stop: StopRequest) -> None:
    total = len(plan.points)
    for point in todo:
        if stop.requested:
            return
        stop.armed = False  # until this point's training starts, a stop stops at once: nothing to save
        callbacks.on_point_start(point, total, None)
        try:
            run_here(point, stop)
        except TrainingInterrupted as exc:
            _end(point, INTERRUPTED, exc.exit_code, str(exc))
            if not stop.requested:  # stopped before its training started: the request was not recorded
                stop.request("SIGINT" if exc.exit_code == EXIT_SIGINT else "SIGTERM", exc.exit_code)
            callbacks.on_point_end(point, total)
            write_document(plan, "running")
            return
        except LnlError as exc:
            _end(point, FAILED, exc.exit_code, str(exc))
        except KeyboardInterrupt:  # a second Ctrl-C: the run was abandoned mid-step
            _end(point, INTERRUPTED, EXIT_SIGINT, "interrupted")
            callbacks.on_point_end(point, total)
            raise
        else:
            _finished(point)
        callbacks.on_point_end(point, total)
        write_document(plan, "running")


def _end(point: Point, status: str, exit_code: int | None, error: str | None) -> None:
    point.status, point.exit_code, point.error = status, exit_code, error


def _finished(point: Point) -> None:
    """A point whose training returned (or whose process exited 0): its result, from its summary.json."""
    stored = run_folder.read_summary(point.run_dir)
    if stored is None:
        _end(point, FAILED, EXIT_CHECKPOINT,
             f"{point.run_dir} has all its epochs but no {run_folder.SUMMARY_FILE} (it stopped while testing); "
             f"run `lnl train --resume {point.run_dir}` or remove it")
        return
    _end(point, FINISHED, 0, None)
    point.result = point_result(stored)


# ---------------------------------------------------------------------------- N points at once


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


def _run_processes(plan: SweepPlan, todo: list[Point], jobs: int, callbacks: SweepCallbacks,
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
        _finished(point)
        return
    error = _last_error(child) or f"lnl train exited with {code}"
    if code < 0:  # killed by a signal
        error, code = f"lnl train was killed by {signal.Signals(-code).name}", 128 - code
    status = INTERRUPTED if code in (EXIT_SIGINT, EXIT_SIGTERM) else FAILED
    _end(point, status, code, error)


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


# ---------------------------------------------------------------------------- how it ended


def _interrupted(plan: SweepPlan, stop: StopRequest) -> TrainingInterrupted:
    done = sum(point.status == FINISHED for point in plan.points)
    cut = [point.name for point in plan.points
           if point.status == INTERRUPTED and run_folder.resume_checkpoint(point.run_dir).exists()]
    kept = f"; {', '.join(cut)} kept {'its checkpoint' if len(cut) == 1 else 'their checkpoints'}" if cut else ""
    return TrainingInterrupted(
        f"sweep interrupted by {stop.signal_name}: {done} of {len(plan.points)} points finished{kept}; "
        f"run the same sweep again to continue (see {plan.out_dir / SWEEP_FILE})", stop.exit_code)


def _failed(plan: SweepPlan, failed: list[Point]) -> PointsFailed:
    first = failed[0]
    listed = "; ".join(f"{point.name} (exit {point.exit_code}): {point.error}" for point in failed[:POINTS_NAMED])
    more = f"; and {len(failed) - POINTS_NAMED} more" if len(failed) > POINTS_NAMED else ""
    return PointsFailed(f"{len(failed)} of {len(plan.points)} points failed (see {plan.out_dir / SWEEP_FILE}): "
                        f"{listed}{more}", first.exit_code or EXIT_INTERNAL)
