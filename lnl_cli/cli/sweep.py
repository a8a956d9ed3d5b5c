"""`lnl sweep`: parse, call the core, render."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from lnl_cli import api
from lnl_cli.cli.common import (PRESET_HELP, DataRoot, JsonOutput, Overrides, SetValues, collect_overrides, fmt,
                                graceful_stop, print_json, progress_callbacks, result_output, stderr, stdout,
                                unlimited_width_stdout, user_errors)
from lnl_cli.cli.train import DEFAULT_PRESET

ACTIONS = {"train": "training", "resume": "resuming"}


def sweep(
    overrides: Overrides = None,
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=PRESET_HELP + " [default: colored-mnist]"),
    grid: Optional[list[str]] = typer.Option(
        None, "--grid", "-g", metavar="KEY=V1,V2,...",
        help="An axis of the grid (repeatable): every combination of the axes' values is one run. Values are "
             "read like KEY=VALUE overrides; a list value goes in brackets: data.mean=[0.5,0.5,0.5],[0.4,0.4,0.4]."),
    set_values: SetValues = None,
    out: Optional[str] = typer.Option(
        None, "--out", "-o", metavar="DIR",
        help="Sweep folder: sweep.json and one run folder per point, <name>-<method>-<key><value>... "
             "(default: runs)."),
    data_root: DataRoot = None,
    jobs: int = typer.Option(
        1, "--jobs", "-j", min=1,
        help="Train N points at once, each an `lnl train` process of its own: packs several small runs onto "
             "one GPU. On a CPU give each process train.num_threads=C cores with N x C at most the cores, "
             "or they slow each other down. Default: one after another in this process."),
    json_output: JsonOutput = False,
    dry_run: bool = typer.Option(False, "--dry-run", help="Check every point's config and folder, list the points "
                                                           "and what would happen to each, and exit."),
) -> None:
    """Train a grid of configs: one ordinary run folder per point (lnl compare DIR/* reads them), and
    sweep.json listing them. Run again, it skips finished points and resumes interrupted ones."""
    with user_errors():
        plan = api.sweep_plan(preset or DEFAULT_PRESET, grid or [], collect_overrides(set_values, overrides, data_root),
                              out, jobs)
    if dry_run:
        _render_plan(plan, json_output)
        return
    with user_errors():
        with graceful_stop() as stop:
            document = api.sweep(plan, _PointLines(), stop, progress_callbacks if jobs == 1 else None)
    with result_output(f"; the sweep is complete ({plan.out_dir / api.SWEEP_FILE})"):
        if json_output:
            print_json(document)
        else:
            _print_points(document, plan)


class _PointLines(api.SweepCallbacks):
    """One line on stderr when a point starts and when it ends."""

    def on_point_start(self, point: Any, total: int, log: Any) -> None:
        where = f" (log: {log})" if log is not None else ""
        _line(point, total, f"{ACTIONS[point.action]} {point.name} -> {point.run_dir}{where}")

    def on_point_end(self, point: Any, total: int) -> None:
        if point.status == "finished":
            verb = "skipped" if point.action == "skip" else "finished"
            _line(point, total, f"{verb} {point.name}"
                  + (" (finished before)" if point.action == "skip" else "") + _result_text(point.result))
        elif point.status == "failed":
            _line(point, total, f"failed {point.name} (exit {point.exit_code}): {point.error}")
        else:
            _line(point, total, f"{point.status} {point.name}: its folder keeps what was saved")


def _line(point: Any, total: int, text: str) -> None:
    stderr.print(escape(f"[{point.index + 1}/{total}] {text}"), soft_wrap=True, highlight=False)


def _result_text(result: dict | None) -> str:
    if not result:
        return ""
    return (f": accuracy {fmt(result.get('accuracy'))}, selected epoch {fmt(result.get('selected_epoch'))}, "
            f"{fmt(result.get('seconds'), 1)}s")


def _render_plan(plan: Any, json_output: bool) -> None:
    actions = [point.action for point in plan.points]
    stderr.print(escape(f"{len(actions)} points are valid: {actions.count('train')} to train, "
                        f"{actions.count('resume')} to resume, {actions.count('skip')} finished before; "
                        f"nothing was written"), soft_wrap=True)
    with result_output():
        if json_output:
            print_json(api.sweep_document(plan))
            return
        table = Table(title=escape(f"{len(actions)} points in {plan.out_dir}"), title_justify="left")
        for column in ("point", "action", "folder"):
            table.add_column(column, no_wrap=column != "action")
        for point in plan.points:
            table.add_row(escape(point.name), point.action, escape(str(point.run_dir)))
        _table_out().print(table)


def _print_points(document: dict, plan: Any) -> None:
    table = Table(title=escape(f"{len(document['points'])} points in {plan.out_dir}"), title_justify="left")
    for column in ("point", "status", "accuracy", "worst group", "epoch", "seconds"):
        table.add_column(column, no_wrap=column == "point",
                         justify="left" if column in ("point", "status") else "right")
    for point in document["points"]:
        result = point["result"] or {}
        status = "finished before" if point["action"] == "skip" else point["status"]
        table.add_row(escape(point["name"]), status, fmt(result.get("accuracy")),
                      fmt(result.get("worst_group_accuracy")), fmt(result.get("selected_epoch")),
                      fmt(result.get("seconds"), 1))
    _table_out().print(table)


def _table_out() -> Any:
    """Off a terminal a table is as wide as it needs, so that point names are never cut."""
    return stdout if stdout.is_terminal else unlimited_width_stdout()
