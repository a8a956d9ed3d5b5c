"""`lnl evaluate`: report a checkpoint on the unbiased test set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from rich.markup import escape

from lnl_cli import api
from lnl_cli.cli.common import (CheckpointPath, DataRoot, JsonOutput, OverlayPreset, Overrides, SetValues,
                                collect_overrides, fmt, print_json, result_output, stderr, stdout, user_errors)


def evaluate(
    checkpoint: CheckpointPath,
    overrides: Overrides = None,
    preset: OverlayPreset = None,
    set_values: SetValues = None,
    data_root: DataRoot = None,
    plots: Optional[Path] = typer.Option(
        None, "--plots", help="Write confusion_matrix.png and cell_accuracy.png into this folder."),
    json_output: JsonOutput = False,
) -> None:
    """Accuracy, bias-aligned/conflicting accuracy, per-(label, bias) cells, worst group, confusion matrix."""
    with user_errors():
        if plots is not None:
            api.check_plots_available()  # before the evaluation, not after it
        report = api.evaluate(checkpoint, preset, collect_overrides(set_values, overrides, data_root))
        if plots is not None:
            for path in api.write_evaluation_plots(report, plots):
                stderr.print(escape(f"wrote {path}"), soft_wrap=True)
    with result_output():
        if json_output:
            print_json(report)
        else:
            render_report(report)


def render_report(report: dict[str, Any]) -> None:
    summary = Table(title=escape(f"{report['method']} checkpoint on {report['dataset']} (unbiased test set)"),
                    show_header=False)
    for key, label in {**api.METRIC_DESCRIPTIONS, api.NUM_SAMPLES: "samples"}.items():
        summary.add_row(label, fmt(report.get(key)))
    stdout.print(summary)
    stdout.print(_grid("accuracy per cell (rows: label, columns: bias; * the training split's aligned cells)",
                       _cell_matrix(report["cells"]), _names(report["cells"], "label"), _names(report["cells"], "bias")))
    labels = _names(report["cells"], "label")
    stdout.print(_grid("confusion matrix (rows: true label, columns: predicted)", report["confusion_matrix"],
                       labels, labels))


def _cell_matrix(cells: list[dict[str, Any]]) -> list[list[Any]]:
    labels = 1 + max(c["label"] for c in cells)
    biases = 1 + max(c["bias"] for c in cells)
    matrix: list[list[Any]] = [[None] * biases for _ in range(labels)]
    for cell in cells:
        matrix[cell["label"]][cell["bias"]] = fmt(cell["accuracy"], 2) + ("*" if cell.get("aligned") else "")
    return matrix


def _names(cells: list[dict[str, Any]], axis: str) -> list[str]:
    """Each label (or bias value) by its name where the report has names (manifests, folders), else its index."""
    names = {cell[axis]: str(cell.get(f"{axis}_name", cell[axis])) for cell in cells}
    return [names[index] for index in sorted(names)]


def _grid(title: str, rows: list[list[Any]], row_names: list[str], column_names: list[str], digits: int = 4) -> Table:
    table = Table(title=title)
    table.add_column("")
    for name in column_names:
        table.add_column(escape(name), justify="right")
    for name, row in zip(row_names, rows):
        table.add_row(escape(name), *(fmt(v, digits) for v in row))
    return table
