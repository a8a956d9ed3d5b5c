"""`lnl probe-bias`: train fresh probes on frozen features and gate on the bias they recover."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from lnl_cli.cli.common import (CheckpointPath, DataRoot, JsonOutput, OverlayPreset, Overrides, SetValues,
                                collect_overrides, fmt, print_json, result_output, stderr, stdout, user_errors)
from lnl_cli import api
from lnl_cli.api import DEFAULT_PROBE_LAYER, ProbeSettings
from lnl_cli.errors import EXIT_GATE_FAILED


def probe_bias(
    checkpoint: CheckpointPath,
    overrides: Overrides = None,
    preset: OverlayPreset = None,
    set_values: SetValues = None,
    data_root: DataRoot = None,
    layer: str = typer.Option(DEFAULT_PROBE_LAYER, "--layer",
                              help="features (f's output, what the bias head reads), embedding (g's pooled "
                                   "features) or input (the images: a sanity check)."),
    probe: str = typer.Option("linear", "--probe", help="linear or mlp."),
    seeds: int = typer.Option(3, "--seeds", help="Probe seeds to average over."),
    source: str = typer.Option("test", "--source",
                               help="Split that supplies probe data; test is bias-independent in Colored-MNIST."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the stratified train/held-out split."),
    steps: int = typer.Option(ProbeSettings.steps, "--steps", help="Optimizer steps of each probe."),
    max_leakage: Optional[float] = typer.Option(
        None, "--max-leakage", help="Exit 1 when mean normalised leakage exceeds this (0 = none, 1 = all)."),
    json_output: JsonOutput = False,
) -> None:
    """Measure how much bias the features leak; with --max-leakage, fail (exit 1) above the threshold."""
    settings = ProbeSettings(kind=probe, layer=layer, seeds=seeds, source=source, split_seed=split_seed,
                             steps=steps)

    def on_seed(done: int, total: int) -> None:
        stderr.print(f"probe {done}/{total} trained")

    with user_errors():
        report = api.probe(checkpoint, preset, collect_overrides(set_values, overrides, data_root),
                           settings, max_leakage, on_seed)
    with result_output():  # an unwritable result is exit 74, never 1 (gate failed)
        if json_output:
            print_json(report)
        else:
            render(report)
    if report["passed"] is False:
        stderr.print(f"[bold red]FAIL:[/] leakage {fmt(report['leakage']['mean'])} > {max_leakage}")
        raise typer.Exit(EXIT_GATE_FAILED)


def render(report: dict[str, Any]) -> None:
    table = Table(title=escape(f"bias leakage of {report['method']} features ({report['layer']}, {report['probe']} "
                               f"probe, {report['seeds']} seeds)"), show_header=False)
    for label, key in (("probe accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"),
                       ("normalised leakage", "leakage"), ("MI lower bound (bits)", "mi_lower_bound_bits")):
        table.add_row(label, f"{fmt(report[key]['mean'])} ± {fmt(report[key]['std'])}")
    table.add_row("chance (majority class)", fmt(report["chance_accuracy"]))
    table.add_row("bias classes K", str(report["num_classes"]))
    table.add_row("samples (probe train / held out)", f"{report['train_samples']} / {report['heldout_samples']}")
    table.add_row("feature size", str(report["feature_size"]))
    if report["passed"] is not None:
        table.add_row("gate", f"{'passed' if report['passed'] else 'FAILED'} (max leakage {report['max_leakage']})")
    stdout.print(table)
