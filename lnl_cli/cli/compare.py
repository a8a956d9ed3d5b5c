"""`lnl compare`: runs side by side."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from lnl_cli.cli.common import JsonOutput, fmt, print_json, result_output, result_stream, stdout, user_errors
from lnl_cli import api
from lnl_cli.api import COMPARE_COLUMNS as COLUMNS


def compare(
    runs: list[Path] = typer.Argument(..., help="Run folders written by `lnl train`."),
    sort: Optional[str] = typer.Option("accuracy", "--sort", help=f"Column to sort by: {', '.join(COLUMNS)}."),
    ascending: bool = typer.Option(False, "--ascending", help="Sort smallest first."),
    json_output: JsonOutput = False,
    csv_output: bool = typer.Option(False, "--csv", help="Print CSV on stdout."),
) -> None:
    """Key config values and final metrics of several runs in one table (leakage when probed)."""
    with user_errors():
        rows = api.compare(runs, sort, descending=not ascending)
    with result_output():
        if json_output:
            print_json(rows)
        elif csv_output:
            writer = csv.DictWriter(result_stream, fieldnames=list(COLUMNS), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        else:
            table = Table(title=escape(f"{len(rows)} runs, sorted by {sort}"))
            for column in COLUMNS:
                table.add_column(column.split(".")[-1], justify="left" if column in ("run", "method") else "right")
            for row in rows:
                table.add_row(*(escape(fmt(row[c])) for c in COLUMNS))
            stdout.print(table)
