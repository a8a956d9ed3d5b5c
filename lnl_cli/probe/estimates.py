"""The numbers a leakage report is made of: balanced accuracy and normalised leakage, their bootstrap
intervals, means over probe runs (floored after averaging), the ratio to the input ceiling, and how
strongly label and bias depend on each other in the probe data.

Apart from the probes because none of it trains anything: it is arithmetic on which held-out samples
each probe got right, vectorised so that a thousand resamples cost a few tensor operations.
(Not named statistics.py: that is the standard library module this one uses.)
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch

from lnl_cli.probe_settings import CONFIDENCE

BOOTSTRAP_RESAMPLES = 1000
# Cramér's V of label and bias in the probe data from which the report warns that leakage is confounded
# with the label (0: independent, as in Colored-MNIST's test set; 1: the label decides the bias).
DEPENDENCE_WARN_CRAMERS_V = 0.3
# Resampled entries (resamples x probe seeds x held-out samples) handled in one vectorised step; bounds
# the memory of the bootstrap (several 8-byte tensors of this size) whatever the sample count.
BOOTSTRAP_CHUNK_ELEMENTS = 1 << 22
# Mixed into the split seed to seed the resamples: the split's own permutation uses the split seed as it
# is, and the resamples should not be drawn from the same stream.
BOOTSTRAP_SEED_SALT = 0x5EED


def balanced_leakage(correct: torch.Tensor, targets: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced accuracy and normalised leakage of every row of `correct` (... x samples, bool).

    `targets` (broadcastable to `correct`) are the samples' bias classes. Balanced accuracy is the mean
    recall over the classes present in the row; normalised leakage is (balanced - 1/K) / (1 - 1/K) with K
    those classes (0 when fewer than two are present). One formula for a probe's score and for every
    bootstrap resample of it, computed for all rows at once (a bincount, no per-sample Python)."""
    targets = targets.expand_as(correct)
    samples = correct.shape[-1]
    flat_correct, flat_targets = correct.reshape(-1, samples), targets.reshape(-1, samples)
    rows = flat_correct.shape[0]
    index = (torch.arange(rows, device=correct.device)[:, None] * classes + flat_targets).flatten()
    counts = torch.bincount(index, minlength=rows * classes).view(rows, classes)
    hits = torch.bincount(index, weights=flat_correct.flatten().double(), minlength=rows * classes).view(rows, classes)
    present = counts > 0
    k_present = present.sum(dim=1)
    balanced = (hits / counts.clamp(min=1)).sum(dim=1) / k_present.clamp(min=1)
    chance = 1.0 / k_present.clamp(min=2).double()
    leakage = torch.where(k_present > 1, (balanced - chance) / (1 - chance), torch.zeros_like(balanced))
    shape = correct.shape[:-1]
    return balanced.view(shape), leakage.view(shape)


def bootstrap_leakage(correct_sets: list[torch.Tensor], targets: torch.Tensor, classes: int,
                      seed: int) -> list[torch.Tensor]:
    """Leakage of every probe seed on BOOTSTRAP_RESAMPLES resamples (with replacement) of the held-out
    samples: one (probe seeds x resamples) tensor per entry of `correct_sets`.

    Every set sees the *same* resamples, so that a ratio of two of them (layer / input, probed on the
    same held-out samples) is bootstrapped jointly rather than as two independent noises."""
    samples = targets.shape[0]
    rows = sum(c.shape[0] for c in correct_sets)
    chunk = max(1, BOOTSTRAP_CHUNK_ELEMENTS // (samples * rows))
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in correct_sets]
    for start in range(0, BOOTSTRAP_RESAMPLES, chunk):
        count = min(chunk, BOOTSTRAP_RESAMPLES - start)
        index = torch.randint(samples, (count, samples), generator=generator)
        resampled_targets = targets[index]
        for part, correct in zip(parts, correct_sets):
            part.append(balanced_leakage(correct[:, index], resampled_targets, classes)[1])
    return [torch.cat(part, dim=1) for part in parts]


def _bootstrap_seed(split_seed: int) -> int:
    return split_seed ^ BOOTSTRAP_SEED_SALT


def _interval(replicates: torch.Tensor) -> tuple[float, float]:
    """The central CONFIDENCE interval of the bootstrap replicates (percentile method). The bounds are
    taken at the sample just outside each tail ("lower"/"higher"), never interpolated: a little wider,
    and defined when some replicates are infinite (a ratio over a zero ceiling)."""
    tail = (1 - CONFIDENCE) / 2
    flat = replicates.flatten().double()
    return (float(torch.quantile(flat, tail, interpolation="lower")),
            float(torch.quantile(flat, 1 - tail, interpolation="higher")))


def _summary(values: list[float], floor: bool = False) -> dict[str, float]:
    """Mean and standard deviation over probe runs; with `floor`, the mean is floored at 0 *after* averaging.

    Leakage and the MI bound cannot be negative, but their estimates can. Flooring each seed before
    averaging would turn symmetric noise around 0 into a positive mean (seeds at -0.02 and +0.01 give 0.005
    instead of 0), reporting leakage where there is none; flooring the average does not."""
    mean = statistics.fmean(values)
    return {"mean": max(0.0, mean) if floor else mean, "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _leakage_summary(values: list[float], replicates: torch.Tensor) -> dict[str, float]:
    """Floored mean, std, the floored CONFIDENCE interval of the pooled replicates, and the raw mean."""
    low, high = _interval(replicates)
    return {**_summary(values, floor=True), "ci_low": max(0.0, low), "ci_high": max(0.0, high),
            "unfloored_mean": statistics.fmean(values)}


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Leakage over ceiling per replicate, both floored at 0: x / 0 is infinite (nothing to compare
    with, so no bound), 0 / 0 is 0 (nothing leaks)."""
    top, bottom = numerator.clamp(min=0), denominator.clamp(min=0)
    safe = torch.where(bottom > 0, bottom, torch.ones_like(bottom))
    return torch.where(bottom > 0, top / safe, torch.where(top > 0, math.inf, 0.0))


def _relative(leakage: float, ceiling: float, layer_replicates: torch.Tensor,
              ceiling_replicates: torch.Tensor) -> dict[str, float | None]:
    """Leakage at the layer / leakage at the input: the mean of the floored means, and the interval of
    the ratio taken resample by resample (same resamples, same probe seed). Undefined (None) when the
    input shows no leakage; an upper bound of None means unbounded (the ceiling is not clearly above 0)."""
    low, high = _interval(_ratio(layer_replicates, ceiling_replicates))
    return {"mean": leakage / ceiling if ceiling > 0 else None,
            "ci_low": low if math.isfinite(low) else None, "ci_high": high if math.isfinite(high) else None}


def label_bias_dependence(labels: torch.Tensor, bias: torch.Tensor, num_labels: int,
                          num_bias: int) -> dict[str, Any]:
    """How strongly the probe data's label and bias depend on each other: Cramér's V of their table, and
    the normalised leakage of a predictor that sees only the label (the most common bias of each label).
    Where they are high (an extreme-bias split: the label decides the bias), a probe that reads the label
    scores as leakage, so the report warns (DEPENDENCE_WARN_CRAMERS_V)."""
    table = torch.bincount(labels.cpu() * num_bias + bias.cpu(), minlength=num_labels * num_bias)
    table = table.view(num_labels, num_bias).double()
    n = table.sum()
    expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / n
    present = expected > 0
    chi2 = ((table - expected)[present] ** 2 / expected[present]).sum()
    rows, cols = int((table.sum(1) > 0).sum()), int((table.sum(0) > 0).sum())
    v = math.sqrt(float(chi2) / (float(n) * (min(rows, cols) - 1))) if min(rows, cols) > 1 else 0.0
    guess = table.argmax(dim=1)[labels.cpu()]  # the label's most common bias value
    _, leakage = balanced_leakage((guess == bias.cpu())[None], bias.cpu(), num_bias)
    strong = v >= DEPENDENCE_WARN_CRAMERS_V
    return {"cramers_v": v, "label_only_leakage": max(0.0, float(leakage[0])),
            "threshold": DEPENDENCE_WARN_CRAMERS_V, "warned": strong}
