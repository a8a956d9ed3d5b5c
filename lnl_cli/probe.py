"""Bias leakage: how well a *fresh* classifier recovers the bias from frozen features.

LNL's own bias head sitting at chance proves little (an adversary can be fooled while the
information is still there; Elazar & Goldberg, 2018). Here a new probe is trained on half of a
source where bias and label are independent and scored on the other, disjoint half.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from lnl_cli.algorithms import Algorithm
from lnl_cli.data.base import BiasedDataset, BiasedSplit, iterate_batches
from lnl_cli.evaluation import load_for_inference
from lnl_cli.probe_settings import ProbeSettings
from lnl_cli.version import JSON_SCHEMA_VERSION

FEATURE_BATCH_SIZE = 1024
def stratified_halves(strata: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint index sets, alternating within every stratum in a seeded random order."""
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(strata), generator=generator)
    order = shuffled[torch.sort(strata[shuffled], stable=True).indices]
    sorted_strata = strata[order]
    starts = torch.searchsorted(sorted_strata, sorted_strata)  # first position of each element's stratum
    rank_in_stratum = torch.arange(len(strata)) - starts
    first = order[rank_in_stratum % 2 == 0]
    second = order[rank_in_stratum % 2 == 1]
    return first, second


@torch.no_grad()
def extract_features(algorithm: Algorithm, split: BiasedSplit, dataset: BiasedDataset, layer: str) -> torch.Tensor:
    """Flattened float features of every image in `split` at `layer`, with f frozen in eval mode."""
    algorithm.eval()
    chunks = []
    for batch in iterate_batches(split, FEATURE_BATCH_SIZE, dataset.mean, dataset.std, shuffle=False):
        if layer == "input":
            out = batch.images
        else:
            out = algorithm.features(batch.images)
            if layer == "embedding":
                with algorithm.autocast():
                    out = algorithm.classifier.layers[:-1](out)
        chunks.append(out.flatten(1).float())
    return torch.cat(chunks)


def _make_probe(settings: ProbeSettings, in_features: int, classes: int) -> nn.Module:
    if settings.kind == "linear":
        return nn.Linear(in_features, classes)
    return nn.Sequential(nn.Linear(in_features, settings.mlp_hidden), nn.ReLU(), nn.Linear(settings.mlp_hidden, classes))


def train_probe(features: torch.Tensor, targets: torch.Tensor, classes: int, settings: ProbeSettings,
                seed: int) -> nn.Module:
    torch.manual_seed(seed)
    probe = _make_probe(settings, features.shape[1], classes).to(features.device)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = len(targets)
    step = 0
    while step < settings.steps:
        order = torch.randperm(n, generator=generator).to(features.device)
        for start in range(0, n, settings.batch_size):
            index = order[start:start + settings.batch_size]
            loss = F.cross_entropy(probe(features[index]), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == settings.steps:
                break
    return probe.eval()


def entropy_bits(targets: torch.Tensor, classes: int) -> float:
    p = torch.bincount(targets, minlength=classes).double() / len(targets)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


MIN_FEATURE_STD = 1e-4
CALIBRATION_EVERY = 5  # every 5th probe-training sample calibrates the probe's temperature instead
TEMPERATURES = torch.logspace(-1.0, 4.0, 101)


@torch.no_grad()
def fit_temperature(probe: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> float:
    """Softmax temperature that minimises cross-entropy on calibration data the probe did not fit.

    An over-confident probe's held-out cross-entropy can exceed H(b) and void the MI bound; the bound
    I(b; z) >= H(b) - CE holds for any fixed predictor, so calibrating it on disjoint data keeps it valid.
    """
    logits = probe(features).float()
    losses = torch.stack([F.cross_entropy(logits / t, targets) for t in TEMPERATURES.tolist()])
    return float(TEMPERATURES[int(losses.argmin())])


@torch.no_grad()
def score_probe(probe: nn.Module, features: torch.Tensor, targets: torch.Tensor, classes: int,
                temperature: float = 1.0) -> dict[str, float]:
    logits = probe(features) / temperature
    predicted = logits.argmax(dim=1)
    present = torch.bincount(targets, minlength=classes) > 0
    recall = torch.zeros(classes, dtype=torch.float64, device=targets.device)
    for k in range(classes):  # per class, not per sample: K iterations
        if present[k]:
            recall[k] = (predicted[targets == k] == k).double().mean()
    balanced = float(recall[present].mean())
    k_present = int(present.sum())
    cross_entropy_bits = float(F.cross_entropy(logits, targets)) / math.log(2)
    return {
        "accuracy": float((predicted == targets).double().mean()),
        "balanced_accuracy": balanced,
        "leakage": (balanced - 1 / k_present) / (1 - 1 / k_present) if k_present > 1 else 0.0,
        "mi_lower_bound_bits": max(0.0, entropy_bits(targets, classes) - cross_entropy_bits),
    }


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def probe_features(features: torch.Tensor, bias: torch.Tensor, strata: torch.Tensor, classes: int,
                   settings: ProbeSettings, on_seed: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train/score `settings.seeds` probes on disjoint stratified halves; mean and std of each metric."""
    first, second = stratified_halves(strata.cpu(), settings.split_seed)
    first, second = first.to(features.device), second.to(features.device)
    train_x, held_x = features[first], features[second]
    mean, std = train_x.mean(dim=0), train_x.std(dim=0)
    # A dimension (almost) constant on the probe-training half carries nothing the probe can learn; scaling
    # it by its tiny spread would blow up the held-out values and the cross-entropy, so it is zeroed.
    std = torch.where(std > MIN_FEATURE_STD, std, torch.full_like(std, float("inf")))
    train_x, held_x = (train_x - mean) / std, (held_x - mean) / std
    train_y, held_y = bias[first], bias[second]
    calibrate = torch.arange(len(train_y), device=train_y.device) % CALIBRATION_EVERY == 0
    runs = []
    for seed in range(settings.seeds):
        probe = train_probe(train_x[~calibrate], train_y[~calibrate], classes, settings, seed)
        temperature = fit_temperature(probe, train_x[calibrate], train_y[calibrate])
        runs.append(score_probe(probe, held_x, held_y, classes, temperature))
        if on_seed:
            on_seed(seed + 1, settings.seeds)
    majority = float(torch.bincount(held_y, minlength=classes).max()) / len(held_y)
    return {
        **{name: _mean_std([r[name] for r in runs]) for name in runs[0]},
        "chance_accuracy": majority,
        "num_classes": classes,
        "train_samples": len(first),
        "heldout_samples": len(second),
        "feature_size": int(features.shape[1]),
        "per_seed": runs,
    }


def probe_checkpoint(path: Path, preset: str | Path | None = None, overrides: Iterable[str] | dict[str, Any] = (),
                     settings: ProbeSettings = ProbeSettings(), max_leakage: float | None = None,
                     on_seed: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Leakage report of a checkpoint's frozen features; `passed` compares mean leakage to `max_leakage`."""
    settings.check(max_leakage)
    config, algorithm, dataset = load_for_inference(path, preset, overrides, with_train=settings.source == "train")
    split = dataset.test if settings.source == "test" else dataset.train
    features = extract_features(algorithm, split, dataset, settings.layer)
    strata = split.labels * dataset.num_bias_classes + split.bias
    result = probe_features(features, split.bias, strata, dataset.num_bias_classes, settings, on_seed)
    leakage = result["leakage"]["mean"]
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "checkpoint": str(path),
        "method": config.method,
        "dataset": dataset.description,
        "source": settings.source,
        "layer": settings.layer,
        "probe": settings.kind,
        "seeds": settings.seeds,
        **result,
        "max_leakage": max_leakage,
        "passed": None if max_leakage is None else bool(leakage <= max_leakage),
    }
