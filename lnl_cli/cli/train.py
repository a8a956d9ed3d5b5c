"""`lnl train`: parse, call the core, render."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.table import Table

from lnl_cli import api
from lnl_cli.cli.common import (PRESET_HELP, DataRoot, JsonOutput, Overrides, SetValues, collect_overrides, fail,
                                fmt, graceful_stop, print_json, progress_callbacks, stderr, stdout, user_errors)
from lnl_cli.cli.presets import print_presets
from lnl_cli.engine import resolve_run_dir
from lnl_cli.errors import EXIT_USAGE, TrainingInterrupted

DEFAULT_PRESET = "colored-mnist"


@contextlib.contextmanager
def plots_afterwards(run_dir: Path) -> Iterator[None]:
    """Write the run's PNG plots when training ends, finished or interrupted."""
    try:
        yield
    except TrainingInterrupted:
        _write_plots(run_dir)
        raise
    _write_plots(run_dir)


def _write_plots(run_dir: Path) -> None:
    from lnl_cli.plots import PlotsUnavailable, plot_training

    try:
        plot_training(run_dir)
    except PlotsUnavailable as exc:
        stderr.print(f"plots skipped: {exc}", soft_wrap=True)


def train(
    overrides: Overrides = None,
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=PRESET_HELP + " [default: colored-mnist]"),
    set_values: SetValues = None,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default runs/<preset>-<method>-N)."),
    data_root: DataRoot = None,
    json_output: JsonOutput = False,
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue the run in this folder from its checkpoint (train.epochs=N extends it)."),
    list_presets: bool = typer.Option(False, "--list-presets", help="List the built-in presets and exit."),
) -> None:
    """Train a model on a preset; writes config.yaml, metrics.jsonl, checkpoint.pt and summary.json."""
    if list_presets:
        print_presets(json_output)
        return
    if resume is not None and (preset is not None or out is not None):
        raise fail("--resume continues a run with its own config and folder; drop --preset and --out", EXIT_USAGE)
    with user_errors():
        all_overrides = collect_overrides(set_values, overrides, data_root)
        if resume is not None:
            with graceful_stop() as stop, plots_afterwards(resume):
                summary = api.resume(resume, all_overrides, progress_callbacks(), stop)
        else:
            config = api.load_config(preset or DEFAULT_PRESET, all_overrides)
            run_dir = resolve_run_dir(out, config)
            with graceful_stop() as stop, plots_afterwards(run_dir):
                summary = api.train(config, run_dir, progress_callbacks(), stop)
    if json_output:
        print_json(summary)
        return
    if summary.get("already_finished"):
        stdout.print(f"{summary['run_dir']} already finished")
        return
    table = Table(title=f"{summary['method']} on {summary['dataset']}", show_header=False)
    test = summary["test"]
    for label, key in (("unbiased test accuracy", "accuracy"), ("bias-aligned accuracy", "aligned_accuracy"),
                       ("bias-conflicting accuracy", "conflicting_accuracy"),
                       ("worst-group accuracy", "worst_group_accuracy"),
                       ("bias-head accuracy", "bias_head_accuracy")):
        table.add_row(label, fmt(test.get(key)))
    table.add_row("train images/s", fmt(summary["train_images_per_second"], 1))
    table.add_row("wall time (s)", fmt(summary["seconds"], 1))
    table.add_row("run folder", summary["run_dir"])
    stdout.print(table)
