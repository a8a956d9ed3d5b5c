"""`lnl export`: a trained model as a file other programs can run."""

from __future__ import annotations

from pathlib import Path

import typer

from lnl_cli import api
from lnl_cli.cli.common import CheckpointPath, JsonOutput, print_json, result_output, stdout, user_errors


def export(
    checkpoint: CheckpointPath,
    fmt: str = typer.Option("torchscript", "--format", "-f", help=f"One of {', '.join(api.EXPORT_FORMATS)}."),
    out: Path = typer.Option(..., "--out", "-o", help="File to write (e.g. model.pt or model.onnx)."),
    json_output: JsonOutput = False,
    force: bool = typer.Option(False, "--force", help="Let --out replace a checkpoint or a file of a run folder."),
) -> None:
    """Export a checkpoint as TorchScript or ONNX: raw images in [0,1] (N x C x H x W) in, class probabilities out."""
    with user_errors():
        result = api.export(checkpoint, fmt, out, force=force)
    with result_output(f"; {result['out']} is complete"):
        if json_output:
            print_json(result)
            return
        shape = " x ".join(map(str, result["input_shape"]))
        stdout.print(f"wrote {result['out']} ({result['format']}): images {shape} in [0, 1] -> probabilities of "
                     f"{len(result['classes'])} classes", soft_wrap=True, markup=False)
