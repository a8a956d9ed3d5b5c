"""Unbiased-test metrics from per-(label, bias) counts, computed on the device in whole tensors.

The names of what it reports live in :mod:`lnl_cli.metric_names` (no torch there, so that the CLI's
tables and progress lines can name them without loading torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch

from lnl_cli.data.base import IGNORE_INDEX, BiasedDataset, Split, iterate_batches
from lnl_cli.metric_names import (ACCURACY, ALIGNED_ACCURACY, BIAS_HEAD_ACCURACY, CONFLICTING_ACCURACY, NUM_SAMPLES,
                                  WORST_GROUP_ACCURACY)

if TYPE_CHECKING:
    from lnl_cli.algorithms import Algorithm

EVAL_BATCH_SIZE = 1024


@torch.no_grad()
def count_predictions(algorithm: "Algorithm", split: Split, dataset: BiasedDataset,
                      batch_size: int = EVAL_BATCH_SIZE) -> dict[str, torch.Tensor]:
    """Per-cell totals and hits, the confusion matrix and the bias head's pixel hits.

    Counts (not averages) so that shards and subsets add up exactly.
    """
    was_training = algorithm.training
    algorithm.eval()
    classes, bias_classes = dataset.num_classes, dataset.num_bias_classes
    device = split.labels.device
    cell_total = torch.zeros(classes * bias_classes, dtype=torch.long, device=device)
    cell_correct = torch.zeros_like(cell_total)
    confusion = torch.zeros(classes * classes, dtype=torch.long, device=device)
    bias_hits = torch.zeros((), dtype=torch.long, device=device)
    bias_pixels = torch.zeros((), dtype=torch.long, device=device)
    for batch in iterate_batches(split, batch_size, dataset.mean, dataset.std, shuffle=False):
        features = algorithm.features(batch.images)
        with algorithm.autocast():
            predicted = algorithm.classifier(features).argmax(dim=1)
        cell = batch.labels * bias_classes + batch.bias
        cell_total += torch.bincount(cell, minlength=cell_total.numel())
        cell_correct += torch.bincount(cell[predicted == batch.labels], minlength=cell_total.numel())
        confusion += torch.bincount(batch.labels * classes + predicted, minlength=confusion.numel())
        if algorithm.has_bias_head:
            with algorithm.autocast():
                head_logits = algorithm.bias_logits(features, batch.labels)
            targets = algorithm.bias_targets(batch, head_logits)
            valid = targets != IGNORE_INDEX
            bias_hits += (head_logits.argmax(dim=1) == targets)[valid].sum()
            bias_pixels += valid.sum()
    algorithm.train(was_training)
    return {
        "cell_total": cell_total.view(classes, bias_classes).cpu(),
        "cell_correct": cell_correct.view(classes, bias_classes).cpu(),
        "confusion": confusion.view(classes, classes).cpu(),
        "bias_hits": bias_hits.cpu(), "bias_pixels": bias_pixels.cpu(),
    }


def _ratio(hits: torch.Tensor, total: torch.Tensor) -> float | None:
    total_count = int(total.sum())
    return float(hits.sum()) / total_count if total_count else None


def summarise_counts(counts: dict[str, torch.Tensor], aligned: torch.Tensor, with_cells: bool = True,
                     class_names: tuple[str, ...] = (), bias_names: tuple[str, ...] = ()) -> dict[str, Any]:
    """Accuracy overall, on bias-aligned cells (the training set's shortcut: for Colored-MNIST bias ==
    label) and bias-conflicting cells, and of the worst (label, bias) group."""
    total, correct = counts["cell_total"], counts["cell_correct"]
    filled = total > 0
    cell_accuracy = correct.double() / total.clamp(min=1).double()
    report: dict[str, Any] = {
        ACCURACY: _ratio(correct, total),
        ALIGNED_ACCURACY: _ratio(correct[aligned], total[aligned]),
        CONFLICTING_ACCURACY: _ratio(correct[~aligned], total[~aligned]),
        WORST_GROUP_ACCURACY: float(cell_accuracy[filled].min()) if filled.any() else None,
        NUM_SAMPLES: int(total.sum()),
        BIAS_HEAD_ACCURACY: (float(counts["bias_hits"]) / int(counts["bias_pixels"])
                               if int(counts["bias_pixels"]) else None),
    }
    if with_cells:
        report["cells"] = [
            {"label": y, "bias": b, **_names(class_names, bias_names, y, b), "aligned": bool(aligned[y, b]),
             "count": int(total[y, b]), "correct": int(correct[y, b]),
             "accuracy": float(cell_accuracy[y, b]) if total[y, b] else None}
            for y in range(total.shape[0]) for b in range(total.shape[1])
        ]
        report["confusion_matrix"] = counts["confusion"].tolist()
    return report


def _names(class_names: tuple[str, ...], bias_names: tuple[str, ...], label: int, bias: int) -> dict[str, str]:
    named = {}
    if class_names:
        named["label_name"] = class_names[label]
    if bias_names:
        named["bias_name"] = bias_names[bias]
    return named


def evaluate_split(algorithm: "Algorithm", split: Split, dataset: BiasedDataset, with_cells: bool = True,
                   reduce_counts: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = lambda c: c,
                   ) -> dict[str, Any]:
    """`reduce_counts` combines the counts of several shards (e.g. summed over processes) first."""
    counts = reduce_counts(count_predictions(algorithm, split, dataset))
    return summarise_counts(counts, dataset.aligned_mask(), with_cells, dataset.class_names, dataset.bias_names)
