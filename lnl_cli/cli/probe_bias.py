"""`lnl probe-bias`: train fresh probes on frozen features and gate on the bias they recover."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from lnl_cli.cli.common import (CheckpointPath, DataRoot, JsonOutput, OverlayPreset, Overrides, SetValues,
                                collect_overrides, fmt, print_json, result_output, stderr, stdout, user_errors)
from lnl_cli import api
from lnl_cli.api import DEFAULT_PROBE_LAYER, PROBE_CONFIDENCE, ProbeSettings
from lnl_cli.errors import EXIT_GATE_FAILED


def probe_bias(
    checkpoint: CheckpointPath,
    overrides: Overrides = None,
    preset: OverlayPreset = None,
    set_values: SetValues = None,
    data_root: DataRoot = None,
    layer: str = typer.Option(DEFAULT_PROBE_LAYER, "--layer",
                              help="features (f's output, what the bias head reads), embedding (g's pooled "
                                   "features) or input (the images: the ceiling itself)."),
    probe: str = typer.Option(ProbeSettings.kind, "--probe", help="linear or mlp."),
    seeds: int = typer.Option(ProbeSettings.seeds, "--seeds", help="Probe seeds per split."),
    source: str = typer.Option(ProbeSettings.source, "--source",
                               help="Split that supplies probe data: test (bias-independent in Colored-MNIST), "
                                    "train, or val (datasets with a validation split)."),
    split_seed: int = typer.Option(ProbeSettings.split_seed, "--split-seed",
                                   help="Seed of the (first) stratified train/held-out split."),
    split_seeds: int = typer.Option(ProbeSettings.split_seeds, "--split-seeds",
                                    help="Number of splits (seeds --split-seed, +1, ...), pooled in the interval."),
    steps: int = typer.Option(ProbeSettings.steps, "--steps", help="Optimizer steps of each probe."),
    max_leakage: Optional[float] = typer.Option(
        None, "--max-leakage",
        help=f"Exit 1 when the upper {PROBE_CONFIDENCE:.0%} bound of normalised leakage exceeds this "
             "(0 = none, 1 = all)."),
    max_relative_leakage: Optional[float] = typer.Option(
        None, "--max-relative-leakage",
        help=f"Exit 1 when the upper {PROBE_CONFIDENCE:.0%} bound of leakage / input ceiling exceeds this "
             "(0 to 1)."),
    allow_dependent: bool = typer.Option(
        False, "--allow-dependent", help="Gate even when the probe data's label and bias are strongly dependent "
                                         "(refused otherwise: leakage there counts the label)."),
    json_output: JsonOutput = False,
) -> None:
    """Measure how much bias the features leak, absolute and relative to the input (the ceiling), with
    bootstrap confidence intervals; with --max-leakage / --max-relative-leakage, fail (exit 1) when the upper bound
    of the interval exceeds the threshold."""
    settings = ProbeSettings(kind=probe, layer=layer, seeds=seeds, source=source, split_seed=split_seed,
                             split_seeds=split_seeds, steps=steps, allow_dependent=allow_dependent)

    def on_seed(done: int, total: int) -> None:
        stderr.print(f"probe {done}/{total} trained")

    with user_errors():
        report = api.probe(checkpoint, preset, collect_overrides(set_values, overrides, data_root),
                           settings, max_leakage, on_seed, max_relative_leakage=max_relative_leakage)
    with result_output():  # an unwritable result is exit 74, never 1 (gate failed)
        if json_output:
            print_json(report)
        else:
            render(report)
    if report["passed"] is False:
        stderr.print(f"[bold red]FAIL:[/] {escape(failure(report['gate']))}")
        raise typer.Exit(EXIT_GATE_FAILED)


def failure(gate: dict[str, Any]) -> str:
    """Which bound broke which threshold, e.g. "leakage upper_95 bound 0.41 > 0.3"."""
    broken = []
    for name, threshold, bound in (("leakage", gate["max_leakage"], gate["leakage_bound"]),
                                   ("relative leakage", gate["max_relative_leakage"], gate["relative_leakage_bound"])):
        if threshold is not None and (bound is None or not bound <= threshold):
            broken.append(f"{name} {gate['bound']} bound {fmt(bound)} > {threshold}")
    return "; ".join(broken)


def _interval(figure: dict[str, Any]) -> str:
    return escape(f"{fmt(figure['mean'])} [{fmt(figure['ci_low'])}, {fmt(figure['ci_high'])}]")


def render(report: dict[str, Any]) -> None:
    confidence = f"{report['bootstrap']['confidence']:.0%}"
    table = Table(title=escape(f"bias leakage of {report['method']} features ({report['layer']}, {report['probe']} "
                               f"probe, {report['seeds']} seeds x {len(report['split_seeds'])} splits; "
                               f"mean [{confidence} interval])"), show_header=False)
    for label, key in (("probe accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"),
                       ("MI lower bound (bits)", "mi_lower_bound_bits")):
        table.add_row(label, f"{fmt(report[key]['mean'])} ± {fmt(report[key]['std'])}")
    table.add_row("probe data", escape(report.get("split") or report["source"]))
    table.add_row("normalised leakage", _interval(report["leakage"]))
    table.add_row("input ceiling (leakage of the images)", _interval(report["input_ceiling"]))
    table.add_row("relative leakage (leakage / ceiling)", _interval(report["relative_leakage"]))
    table.add_row("chance (majority class)", fmt(report["chance_accuracy"]))
    table.add_row("bias classes K", str(report["num_classes"]))
    table.add_row("samples (probe train / held out)", f"{report['train_samples']} / {report['heldout_samples']}")
    table.add_row("feature size", str(report["feature_size"]))
    table.add_row("checkpoint epoch", str(report["checkpoint_epoch"]))
    gate = report["gate"]
    if gate["passed"] is not None:
        limits = ", ".join(f"{name} {gate[key]}" for name, key in (("max leakage", "max_leakage"),
                                                                  ("max relative", "max_relative_leakage"))
                           if gate[key] is not None)
        table.add_row("gate", escape(f"{'passed' if gate['passed'] else 'FAILED'} ({limits}; "
                                     f"on the {gate['bound']} bound)"))
    stdout.print(table)
