"""`lnl predict`: class predictions for image files, as CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lnl_cli import api
from lnl_cli.cli.common import CheckpointPath, JsonOutput, print_json, result_output, user_errors, write_stdout


def predict(
    sources: list[str] = typer.Argument(..., metavar="IMAGES_OR_CSV...",
                                        help="Image files, folders of images, or CSV files with a path column."),
    checkpoint: CheckpointPath = ...,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the CSV here instead of stdout."),
    path_column: str = typer.Option("path", "--path-column", help="Column of a CSV input holding image paths."),
    json_output: JsonOutput = False,
    force: bool = typer.Option(False, "--force", help="Let --out replace a checkpoint or a file of a run folder."),
) -> None:
    """Predict the class of each image: path, prediction, confidence, and one probability column per class."""
    with user_errors():
        if out is not None:
            api.check_output_file(out, force=force)  # before the predictions, not after them
        rows = api.predict(checkpoint, sources, path_column)
        if out is not None:
            api.write_csv(out, rows, force=force)
    with result_output(f"; {out} is complete" if out is not None else ""):
        if json_output:
            print_json(rows)
        elif out is None:
            write_stdout(api.csv_text(rows))
