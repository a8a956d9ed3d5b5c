"""Tiny synthetic biased datasets for fast unit tests."""

from __future__ import annotations

import torch

from lnl_cli.data.base import BiasedDataset, BiasedSplit
from lnl_cli.data.colored_mnist import NORMALISE_MEAN, NORMALISE_STD, color_bin_targets


def tiny_dataset(n: int = 64, classes: int = 10, seed: int = 0) -> BiasedDataset:
    generator = torch.Generator().manual_seed(seed)

    def split(biased: bool) -> BiasedSplit:
        labels = torch.randint(0, classes, (n,), generator=generator)
        bias = labels.clone() if biased else torch.randint(0, classes, (n,), generator=generator)
        stroke = (torch.rand(n, 1, 28, 28, generator=generator) > 0.7).to(torch.uint8)
        colors = (bias.float()[:, None] * 25 + torch.tensor([10.0, 60.0, 120.0])).clamp(1, 255).to(torch.uint8)
        images = stroke * colors[:, :, None, None]
        return BiasedSplit(images, labels, bias, color_bin_targets(images, 8))

    return BiasedDataset(split(True), split(False), classes, classes, 8, NORMALISE_MEAN, NORMALISE_STD, "tiny")
