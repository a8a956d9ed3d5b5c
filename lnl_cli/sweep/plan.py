"""The plan of a sweep: every point of the grid, validated, named, and classified by its folder.

Everything that can be known before training is known here, and every problem of every point is one
ConfigError: a config that `lnl train --dry-run` would refuse, two points that would share a folder, a
folder holding another config. A problem shared by several points names the axis values they share.
Writes nothing.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from lnl_cli import config as config_module
from lnl_cli import run_folder
from lnl_cli.config import Config, get_value
from lnl_cli.engine import check_before_training
from lnl_cli.errors import ConfigError, shown
from lnl_cli.sweep.folders import RESUME, SKIP, TRAIN, check_folder, point_result
from lnl_cli.sweep.grid import Axis, duplicate_keys, parse_grid

# Keys already in every folder name (<name>-<method>-...), so not repeated after it.
NAMED_KEYS = ("name", "method")
MAX_FOLDER_NAME = 255  # bytes, what file systems allow
POINTS_NAMED = 3       # points named in a problem shared by several

PENDING, FINISHED, FAILED, INTERRUPTED = "pending", "finished", "failed", "interrupted"


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
    resume_overrides: dict[str, Any] = field(default_factory=dict)  # RESULT_NEUTRAL_KEYS asked otherwise than stored
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
    problems += duplicate_keys(axes, set_values)
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
    check = check_folder(folder, point.config, f"point {point.name}")
    if check.differ:
        differ = list(check.differ.items())
        what = "a finished run" if check.action == SKIP else "an unfinished run"
        details = ", ".join(f"{key}={shown(there)} there, {shown(asked)} asked"
                            for key, (there, asked) in differ[:POINTS_NAMED])
        more = f" and {len(differ) - POINTS_NAMED} more" if len(differ) > POINTS_NAMED else ""
        raise ConfigError(f"point {point.name}: {folder} holds {what} of another config ({details}{more}); "
                          "remove that folder or sweep into another --out")
    point.action = check.action
    if check.action == SKIP:
        point.status = FINISHED
        point.result = point_result(run_folder.read_summary(folder))
    elif check.action == RESUME:
        point.resume_overrides = check.resume_overrides
