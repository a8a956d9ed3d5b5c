"""sweep.json, the record of a sweep, and how a point's outcome is entered in it.

Apart from the running because both ways of running points (here, or as processes) record outcomes
the same way, and `lnl sweep --dry-run --json` prints the document of a plan that never runs.
"""

from __future__ import annotations

import contextlib
from typing import Any

from lnl_cli import run_folder
from lnl_cli.errors import EXIT_CHECKPOINT, OutputError
from lnl_cli.fileio import atomic_write_json, output_errors
from lnl_cli.sweep.folders import point_result
from lnl_cli.sweep.plan import FAILED, FINISHED, INTERRUPTED, PENDING, Point, SweepPlan
from lnl_cli.version import JSON_SCHEMA_VERSION

SWEEP_FILE = run_folder.SWEEP_FILE


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


def write_quietly(plan: SweepPlan, status: str) -> None:
    """sweep.json while another error is on its way to the user: that error wins over a failed write."""
    with contextlib.suppress(OutputError):
        write_document(plan, status)


def end_point(point: Point, status: str, exit_code: int | None, error: str | None) -> None:
    point.status, point.exit_code, point.error = status, exit_code, error


def finish_point(point: Point) -> None:
    """A point whose training returned (or whose process exited 0): its result, from its summary.json."""
    stored = run_folder.read_summary(point.run_dir)
    if stored is None:
        end_point(point, FAILED, EXIT_CHECKPOINT,
                  f"{point.run_dir} has all its epochs but no {run_folder.SUMMARY_FILE} (it stopped while testing); "
                  f"run `lnl train --resume {point.run_dir}` or remove it")
        return
    end_point(point, FINISHED, 0, None)
    point.result = point_result(stored)
