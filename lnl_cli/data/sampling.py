"""Which training images an epoch visits, and in what order (``train.sampler``).

``uniform`` visits every image once, in a random order: plain ERM. ``group_balanced`` visits every
(label, bias) group that has training images equally often: with G such groups and N images, an epoch
is G x ceil(N / G) draws, ceil(N / G) from each group, so a rare bias-conflicting group is seen as
often as the shortcut's. Inside a group the draws run through random permutations of its images (no
image is repeated before every image of its group has been drawn), then the whole epoch is shuffled.

Why a sampler and not loss weights: it works for every method unchanged (each consumes batches), each
batch holds every group in expectation, so the balanced batches also feed LNL's and CSAD's bias heads,
and it is what the group-aware baselines do (Sagawa et al.'s ``--reweight_groups`` draws groups
uniformly; Idrissi et al. 2022 call it SUBG/RWG). The order is a function of the epoch generator's
state alone, so a resumed epoch continues exactly.
"""

from __future__ import annotations

import math

import torch

UNIFORM = "uniform"
GROUP_BALANCED = "group_balanced"
SAMPLERS = (UNIFORM, GROUP_BALANCED)


def group_index(labels: torch.Tensor, bias: torch.Tensor, num_bias_classes: int) -> torch.Tensor:
    """Each image's (label, bias) group as one integer, label-major: label x num_bias_classes + bias."""
    return labels * num_bias_classes + bias


def group_counts(labels: torch.Tensor, bias: torch.Tensor, num_classes: int, num_bias_classes: int) -> torch.Tensor:
    """Images per (label, bias) group, shaped num_classes x num_bias_classes (int64, on the CPU)."""
    groups = group_index(labels.cpu(), bias.cpu(), num_bias_classes)
    return torch.bincount(groups, minlength=num_classes * num_bias_classes).view(num_classes, num_bias_classes)


def _members(labels: torch.Tensor, bias: torch.Tensor) -> list[torch.Tensor]:
    """The image indices of every non-empty group, groups in label-major order."""
    keys = group_index(labels.cpu(), bias.cpu(), int(bias.max()) + 1 if len(bias) else 1)
    order = torch.argsort(keys, stable=True)
    _, sizes = torch.unique_consecutive(keys[order], return_counts=True)
    return list(order.split(sizes.tolist()))


def epoch_size(labels: torch.Tensor, bias: torch.Tensor, sampler: str) -> int:
    """Draws in one epoch of `sampler` over images with these labels and bias values."""
    n = len(labels)
    if sampler == UNIFORM or n == 0:
        return n
    groups = len(_members(labels, bias))
    return groups * math.ceil(n / groups)


def epoch_order(labels: torch.Tensor, bias: torch.Tensor, sampler: str, generator: torch.Generator | None,
                shuffle: bool = True) -> torch.Tensor:
    """The image indices of one epoch (int64, on the CPU), drawn from `generator`."""
    n = len(labels)
    if sampler == UNIFORM or n == 0:
        return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    members = _members(labels, bias)
    per_group = math.ceil(n / len(members))
    draws = []
    for indices in members:
        cycles = math.ceil(per_group / len(indices))  # that many random permutations of the group, one op
        permutations = torch.rand(cycles, len(indices), generator=generator).argsort(dim=1)
        draws.append(indices[permutations.flatten()[:per_group]])
    order = torch.cat(draws)
    return order[torch.randperm(len(order), generator=generator)] if shuffle else order
