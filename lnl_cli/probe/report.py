"""The leakage report: probes on every split seed and probe seed pooled into means, intervals, the input
ceiling and relative leakage, and a checkpoint's whole report (what `lnl probe-bias --json` prints and
probe.json keeps).

The one module here that knows checkpoints and report fields; the others compute from tensors.
"""

from __future__ import annotations

import statistics
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from lnl_cli.data.base import MIN_BIAS_VALUES
from lnl_cli.errors import ConfigError, DataError, LabelBiasDependenceWarning
from lnl_cli.evaluation import load_identified_for_inference
from lnl_cli.probe.estimates import (BOOTSTRAP_RESAMPLES, _bootstrap_seed, _leakage_summary, _relative, _summary,
                                     bootstrap_leakage, label_bias_dependence)
from lnl_cli.probe.features import PIXELS_VIEW, extract_features, extract_input_views, source_split, split_name
from lnl_cli.probe.fit import SplitProbes, probe_split
from lnl_cli.probe.gate import gate
from lnl_cli.probe_settings import CONFIDENCE, INPUT_LAYER, ProbeSettings
from lnl_cli.version import JSON_SCHEMA_VERSION


def probe_features(features: torch.Tensor, bias: torch.Tensor, strata: torch.Tensor, classes: int,
                   settings: ProbeSettings, on_seed: Callable[[int, int], None] | None = None,
                   ceiling: torch.Tensor | dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Probes on every split seed x probe seed: the mean and std of each metric, and a bootstrap interval
    of the leakage pooled over the held-out resamples of every run.

    `ceiling`: the same samples at the input, one tensor or several named views of it (a view that *is*
    `features` reuses their probes); with it the report has `input_ceiling` (the view that leaks most)
    and `relative_leakage`."""
    views = {} if ceiling is None else ceiling if isinstance(ceiling, dict) else {"input": ceiling}
    separate = [name for name, view in views.items() if view is not features]
    total = settings.split_seeds * settings.seeds * (1 + len(separate))
    done = 0

    def on_probe() -> None:
        nonlocal done
        done += 1
        if on_seed:
            on_seed(done, total)

    splits, layer_replicates = [], []
    view_splits: dict[str, list[SplitProbes]] = {name: [] for name in views}
    view_replicates: dict[str, list[torch.Tensor]] = {name: [] for name in views}
    for split_seed in settings.split_seed_list:
        layer = probe_split(features, bias, strata, classes, settings, split_seed, on_probe)
        at_input = {name: probe_split(view, bias, strata, classes, settings, split_seed, on_probe)
                    if name in separate else layer for name, view in views.items()}
        resampled = bootstrap_leakage([layer.correct, *(probes.correct for probes in at_input.values())],
                                      layer.held_targets, classes, _bootstrap_seed(split_seed))
        splits.append(layer)
        layer_replicates.append(resampled[0])
        for (name, probes), replicates in zip(at_input.items(), resampled[1:]):
            view_splits[name].append(probes)
            view_replicates[name].append(replicates)

    runs = [{**scores, "split_seed": split.split_seed, "seed": seed}
            for split in splits for seed, scores in enumerate(split.scores)]
    first = splits[0]
    majority = float(torch.bincount(first.held_targets, minlength=classes).max()) / len(first.held_targets)
    result: dict[str, Any] = {
        "accuracy": _summary([r["accuracy"] for r in runs]),
        "balanced_accuracy": _summary([r["balanced_accuracy"] for r in runs]),
        "leakage": _leakage_summary([r["leakage"] for r in runs], torch.stack(layer_replicates)),
        "mi_lower_bound_bits": _summary([r["mi_lower_bound_bits"] for r in runs], floor=True),
    }
    if views:
        values = {name: [s["leakage"] for split in view_splits[name] for s in split.scores] for name in views}
        best = max(views, key=lambda name: statistics.fmean(values[name]))
        ceiling_replicates = torch.stack(view_replicates[best])
        result["input_ceiling"] = {**_leakage_summary(values[best], ceiling_replicates),
                                   "view": best, "views": {name: statistics.fmean(v) for name, v in values.items()},
                                   "feature_size": int(views[best].shape[1]), "per_seed": values[best]}
        result["relative_leakage"] = _relative(result["leakage"]["mean"], result["input_ceiling"]["mean"],
                                               torch.stack(layer_replicates), ceiling_replicates)
    return {
        **result,
        "chance_accuracy": majority,
        "num_classes": classes,
        "train_samples": first.train_samples,
        "heldout_samples": len(first.held_targets),
        "feature_size": int(features.shape[1]),
        "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "confidence": CONFIDENCE, "pooled_runs": len(runs)},
        "per_seed": runs,
    }


def probe_checkpoint(path: Path, preset: str | Path | None = None, overrides: Iterable[str] | dict[str, Any] = (),
                     settings: ProbeSettings = ProbeSettings(), max_leakage: float | None = None,
                     on_seed: Callable[[int, int], None] | None = None, *,
                     max_relative_leakage: float | None = None) -> dict[str, Any]:
    """Leakage report of a checkpoint's frozen features, with the input ceiling, bootstrap intervals and
    the gate's verdict (`passed`); it names the checkpoint's epoch and content hash, so that a report
    kept beside a run can later be found stale."""
    settings.check(max_leakage, max_relative_leakage)
    # A validation split is held out of the training data, which `with_train` loads.
    loaded = load_identified_for_inference(path, preset, overrides, with_train=settings.source != "test")
    dataset = loaded.dataset
    if dataset.num_bias_classes < MIN_BIAS_VALUES:
        raise DataError(f"probe-bias measures how well the bias can be read, and this data has "
                        f"{dataset.num_bias_classes} bias value ({', '.join(dataset.bias_names) or 'one value'}): "
                        f"give it a bias attribute with at least {MIN_BIAS_VALUES} values (data.type=folder: "
                        f"data.bias_from)")
    split = source_split(dataset, settings.source)
    probed = split_name(loaded.config, settings.source)
    ceiling = extract_input_views(split, dataset)
    features = (ceiling[PIXELS_VIEW] if settings.layer == INPUT_LAYER
                else extract_features(loaded.algorithm, split, dataset, settings.layer))
    strata = split.labels * dataset.num_bias_classes + split.bias
    dependence = label_bias_dependence(split.labels, split.bias, dataset.num_classes, dataset.num_bias_classes)
    if dependence["warned"]:
        problem = (f"label and bias are strongly dependent in the probe data {probed} (Cramér's V "
                   f"{dependence['cramers_v']:.2f}; the label alone gives leakage {dependence['label_only_leakage']:.2f}): "
                   "a probe that reads the label scores as leakage here; probe a split where they are independent "
                   "(--source, or another test split: data.test=...)")
        gated = max_leakage is not None or max_relative_leakage is not None
        if gated and not settings.allow_dependent:
            raise ConfigError(f"the gate refuses to judge: {problem}, or pass --allow-dependent")
        warnings.warn(problem, LabelBiasDependenceWarning, stacklevel=2)
    result = probe_features(features, split.bias, strata, dataset.num_bias_classes, settings, on_seed, ceiling)
    verdict = gate(result, max_leakage, max_relative_leakage)
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "checkpoint": str(path),
        "checkpoint_epoch": loaded.epoch,
        "checkpoint_sha256": loaded.sha256,
        "method": loaded.config.method,
        "dataset": dataset.description,
        "source": settings.source,
        "split": probed,
        "layer": settings.layer,
        "probe": settings.kind,
        "seeds": settings.seeds,
        "split_seed": settings.split_seed,
        "split_seeds": settings.split_seed_list,
        "settings": asdict(settings),
        "label_bias_dependence": dependence,
        **result,
        "gate": verdict,
        "max_leakage": max_leakage,
        "max_relative_leakage": max_relative_leakage,
        "passed": verdict["passed"],
    }
