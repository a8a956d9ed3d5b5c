"""Bias leakage: how well a *fresh* classifier recovers the bias from frozen features.

LNL's own bias head sitting at chance proves little (an adversary can be fooled while the
information is still there; Elazar & Goldberg, 2018). Here a new probe is trained on half of a
source where bias and label are independent and scored on the other, disjoint half.

Two things make the number usable as a gate:

- a ceiling: the same probes on the input images say how much of the bias is recoverable from the
  data at all, so ``relative_leakage`` = leakage at the layer / leakage at the input says how much of
  it the layer kept (an absolute 0.3 means little if the input itself only gives 0.35);
- an interval: the held-out samples are a sample, so every probe's per-sample right/wrong is
  bootstrapped (resampled with a seeded generator) and the gate compares the *upper* end of the 95%
  interval with its threshold. A gate on the point estimate passes a leaky model about half the time
  when its true leakage sits at the threshold; on the upper bound it does so rarely.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from lnl_cli.algorithms import Algorithm
from lnl_cli.data.base import BiasedDataset, Split, iterate_batches
from lnl_cli.errors import ConfigError, LabelBiasDependenceWarning
from lnl_cli.evaluation import load_identified_for_inference
from lnl_cli.probe_settings import CONFIDENCE, INPUT_LAYER, ProbeSettings
from lnl_cli.version import JSON_SCHEMA_VERSION

FEATURE_BATCH_SIZE = 1024
# The input ceiling (and --layer input) reads the images average-pooled to at most this many pixels a side:
# 128-224 px images of every test sample as floats would need gigabytes, and a probe with one weight per
# pixel of them would mostly fit noise. Smaller images (Colored-MNIST's 28 px) are used as they are.
INPUT_MAX_SIDE = 32
PIXELS_VIEW = "pixels"  # the input view --layer input probes

BOOTSTRAP_RESAMPLES = 1000
# Cramér's V of label and bias in the probe data from which the report warns that leakage is confounded
# with the label (0: independent, as in Colored-MNIST's test set; 1: the label decides the bias).
DEPENDENCE_WARN_CRAMERS_V = 0.3
GATE_BOUND = f"upper_{round(CONFIDENCE * 100)}"  # what `gate.bound` says the gate compared
# Resampled entries (resamples x probe seeds x held-out samples) handled in one vectorised step; bounds
# the memory of the bootstrap (several 8-byte tensors of this size) whatever the sample count.
BOOTSTRAP_CHUNK_ELEMENTS = 1 << 22
# Mixed into the split seed to seed the resamples: the split's own permutation uses the split seed as it
# is, and the resamples should not be drawn from the same stream.
BOOTSTRAP_SEED_SALT = 0x5EED


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
def extract_features(algorithm: Algorithm, split: Split, dataset: BiasedDataset, layer: str) -> torch.Tensor:
    """Flattened float features of every image in `split` at `layer`, with f frozen in eval mode."""
    algorithm.eval()
    chunks = []
    for batch in iterate_batches(split, FEATURE_BATCH_SIZE, dataset.mean, dataset.std, shuffle=False):
        if layer == INPUT_LAYER:
            out = input_views(batch.images)[PIXELS_VIEW]
        else:
            out = algorithm.features(batch.images)
            if layer == "embedding":
                with algorithm.autocast():
                    out = algorithm.classifier.layers[:-1](out)
        chunks.append(out.flatten(1).float())
    return torch.cat(chunks)


def input_views(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the ceiling probes read at the input, flattened: the pixels (pooled to INPUT_MAX_SIDE), and
    each channel's image-wide mean, max, min and standard deviation. A linear probe on pixels cannot
    compute a global property such as a stroke's colour, which sits on other pixels in every image (on
    Colored-MNIST it scored below a trained model's features); the channel statistics read it directly,
    while a spatial bias needs the pixels. The ceiling is whichever view leaks more."""
    pixels = images
    if max(pixels.shape[-2:]) > INPUT_MAX_SIDE:
        pixels = F.adaptive_avg_pool2d(pixels, [min(side, INPUT_MAX_SIDE) for side in pixels.shape[-2:]])
    flat = images.flatten(2).float()
    stats = torch.cat([flat.mean(2), flat.amax(2), flat.amin(2), flat.std(2)], dim=1)
    return {PIXELS_VIEW: pixels.flatten(1).float(), "channel_stats": stats}


@torch.no_grad()
def extract_input_views(split: Split, dataset: BiasedDataset) -> dict[str, torch.Tensor]:
    chunks: dict[str, list[torch.Tensor]] = {}
    for batch in iterate_batches(split, FEATURE_BATCH_SIZE, dataset.mean, dataset.std, shuffle=False):
        for name, view in input_views(batch.images).items():
            chunks.setdefault(name, []).append(view)
    return {name: torch.cat(views) for name, views in chunks.items()}


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


def _relative(leakage: float, ceiling: float, layer_replicates: torch.Tensor,
              ceiling_replicates: torch.Tensor) -> dict[str, float | None]:
    """Leakage at the layer / leakage at the input: the mean of the floored means, and the interval of
    the ratio taken resample by resample (same resamples, same probe seed). Undefined (None) when the
    input shows no leakage; an upper bound of None means unbounded (the ceiling is not clearly above 0)."""
    low, high = _interval(_ratio(layer_replicates, ceiling_replicates))
    return {"mean": leakage / ceiling if ceiling > 0 else None,
            "ci_low": low if math.isfinite(low) else None, "ci_high": high if math.isfinite(high) else None}


def gate(result: dict[str, Any], max_leakage: float | None,
         max_relative_leakage: float | None = None) -> dict[str, Any]:
    """The verdict: each given threshold is compared with the UPPER end of its CONFIDENCE interval, so that
    the gate passes only when the data rule out leakage above it. A missing bound (no ceiling, or an
    unbounded ratio) fails. `passed` is None when no threshold is given."""
    def within(bound: float | None, threshold: float) -> bool:
        return bound is not None and math.isfinite(bound) and bound <= threshold

    leakage_bound = result["leakage"]["ci_high"]
    relative_bound = (result.get("relative_leakage") or {}).get("ci_high")
    checks = []
    if max_leakage is not None:
        checks.append(within(leakage_bound, max_leakage))
    if max_relative_leakage is not None:
        checks.append(within(relative_bound, max_relative_leakage))
    return {"bound": GATE_BOUND, "confidence": CONFIDENCE,
            "max_leakage": max_leakage, "leakage_bound": leakage_bound,
            "max_relative_leakage": max_relative_leakage, "relative_leakage_bound": relative_bound,
            "passed": all(checks) if checks else None}


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


def source_split(dataset: BiasedDataset, source: str) -> Split:
    """The split that supplies the probe data; a ConfigError for a validation split the dataset lacks."""
    if source == "val":
        if dataset.val is None:
            raise ConfigError(f"this dataset has no validation split ({dataset.description}); "
                              "use --source test or --source train")
        return dataset.val
    return dataset.test if source == "test" else dataset.train


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
    split = source_split(dataset, settings.source)
    ceiling = extract_input_views(split, dataset)
    features = (ceiling[PIXELS_VIEW] if settings.layer == INPUT_LAYER
                else extract_features(loaded.algorithm, split, dataset, settings.layer))
    strata = split.labels * dataset.num_bias_classes + split.bias
    dependence = label_bias_dependence(split.labels, split.bias, dataset.num_classes, dataset.num_bias_classes)
    if dependence["warned"]:
        warnings.warn(f"label and bias are strongly dependent in the probe data (Cramér's V "
                      f"{dependence['cramers_v']:.2f}; the label alone gives leakage "
                      f"{dependence['label_only_leakage']:.2f}): a probe that reads the label scores as leakage "
                      "here; probe a split where they are independent (--source)", LabelBiasDependenceWarning,
                      stacklevel=2)
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
