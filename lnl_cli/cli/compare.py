"""`lnl compare`: runs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from lnl_cli import api
from lnl_cli.cli.common import (JsonOutput, print_json, result_output, stdout, unlimited_width_stdout,
                                user_errors, write_stdout)

SECONDS_COLUMN = "seconds"


def compare(
    runs: list[Path] = typer.Argument(..., help="Run folders written by `lnl train`, or `lnl sweep` folders (their finished points)."),
    sort: Optional[str] = typer.Option("accuracy", "--sort", help=f"Column to sort by: a metric ({', '.join(api.COMPARE_METRIC_COLUMNS)}) or a config column of --json (lnl.lambda, ...)."),
    ascending: bool = typer.Option(False, "--ascending", help="Sort smallest first."),
    probe_split: Optional[str] = typer.Option(
        None, "--probe-split", help="Leakage from the latest probe of this split (as probe_split names it, e.g. "
                                    "test:balanced_test.csv) instead of each run's latest probe."),
    json_output: JsonOutput = False,
    csv_output: bool = typer.Option(False, "--csv", help="Print CSV on stdout."),
) -> None:
    """Runs side by side: the config values that differ between them, final metrics, leakage when probed,
    training time (resumes included). --json and --csv give every column."""
    with user_errors():
        rows = api.compare(runs, sort, descending=not ascending, probe_split=probe_split)
    with result_output():
        if json_output:
            print_json(rows)
        elif csv_output:
            write_stdout(api.csv_text([{column: row[column] for column in api.COMPARE_COLUMNS} for row in rows]))
        else:
            _print_table(rows, sort)


def _print_table(rows: list[dict[str, Any]], sort: str | None) -> None:
    columns = api.compare_table_columns(rows)
    table = Table(title=escape(f"{len(rows)} runs, sorted by {sort}"), title_justify="left")
    for column in columns:
        table.add_column(escape(_header(column, columns)), no_wrap=column == "run",
                         justify="left" if column in ("run", "method", "lnl.step", "train.optimizer") else "right")
    for row in rows:
        table.add_row(*(escape(format_cell(column, row[column])) for column in columns))
    # Off a terminal the table takes the width it needs, so that run names are never cut.
    (stdout if stdout.is_terminal else unlimited_width_stdout()).print(table)


def _header(column: str, columns: list[str]) -> str:
    """A column's last name part (`lambda`), or its whole key where another shown column ends the same way
    (`lnl.lambda` beside `csad.lambda`)."""
    short = column.split(".")[-1]
    return column if sum(c.split(".")[-1] == short for c in columns) > 1 else short


def format_cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):  # probe_stale
        return "yes" if value else "no"
    if column == SECONDS_COLUMN:
        return _duration(float(value))
    if isinstance(value, float):
        # Config values with %g (learning rates, weights); metrics with four decimals.
        return f"{value:g}" if column in api.COMPARE_CONFIG_COLUMNS else f"{value:.4f}"
    return str(value)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{rest:02d}s"
