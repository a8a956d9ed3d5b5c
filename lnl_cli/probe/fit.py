"""One probe: a stratified split into disjoint halves, a fresh classifier trained on one, its softmax
temperature calibrated on data it did not fit, and its scores on the other half.

Apart from the statistics because this is the training of small models (optimiser, seeds, batches),
while what is made of their right/wrong answers afterwards is arithmetic on tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lnl_cli.probe.estimates import balanced_leakage
from lnl_cli.probe_settings import ProbeSettings

MIN_FEATURE_STD = 1e-4
CALIBRATION_EVERY = 5  # every 5th probe-training sample calibrates the probe's temperature instead
TEMPERATURES = torch.logspace(-1.0, 4.0, 101)


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
                temperature: float = 1.0) -> tuple[dict[str, float], torch.Tensor]:
    """The probe's held-out scores, and which held-out samples it got right (for the bootstrap).

    The MI bound is left unfloored here: a floor per seed would bias the mean upward (see `_summary`)."""
    logits = probe(features) / temperature
    correct = logits.argmax(dim=1) == targets
    balanced, leakage = balanced_leakage(correct, targets, classes)
    cross_entropy_bits = float(F.cross_entropy(logits, targets)) / math.log(2)
    scores = {
        "accuracy": float(correct.double().mean()),
        "balanced_accuracy": float(balanced),
        "leakage": float(leakage),
        "mi_lower_bound_bits": entropy_bits(targets, classes) - cross_entropy_bits,
    }
    return scores, correct


@dataclass
class SplitProbes:
    """The probes of one stratified split: each seed's scores and which held-out samples it got right."""

    split_seed: int
    held_targets: torch.Tensor      # bias of the held-out samples, on the CPU
    train_samples: int
    scores: list[dict[str, float]]  # one per probe seed
    correct: torch.Tensor           # probe seeds x held-out samples, bool, on the CPU


def probe_split(features: torch.Tensor, bias: torch.Tensor, strata: torch.Tensor, classes: int,
                settings: ProbeSettings, split_seed: int, on_probe: Callable[[], None]) -> SplitProbes:
    """Train and score `settings.seeds` probes on one stratified split of `features`."""
    first, second = stratified_halves(strata.cpu(), split_seed)
    first, second = first.to(features.device), second.to(features.device)
    train_x, held_x = features[first], features[second]
    mean, std = train_x.mean(dim=0), train_x.std(dim=0)
    # A dimension (almost) constant on the probe-training half carries nothing the probe can learn; scaling
    # it by its tiny spread would blow up the held-out values and the cross-entropy, so it is zeroed.
    std = torch.where(std > MIN_FEATURE_STD, std, torch.full_like(std, float("inf")))
    train_x, held_x = (train_x - mean) / std, (held_x - mean) / std
    train_y, held_y = bias[first], bias[second]
    calibrate = torch.arange(len(train_y), device=train_y.device) % CALIBRATION_EVERY == 0
    scores, correct = [], []
    for seed in range(settings.seeds):
        probe = train_probe(train_x[~calibrate], train_y[~calibrate], classes, settings, seed)
        temperature = fit_temperature(probe, train_x[calibrate], train_y[calibrate])
        seed_scores, seed_correct = score_probe(probe, held_x, held_y, classes, temperature)
        scores.append(seed_scores)
        correct.append(seed_correct.cpu())
        on_probe()
    return SplitProbes(split_seed, held_y.cpu(), len(first), scores, torch.stack(correct))
