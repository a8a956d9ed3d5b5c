"""Tiny synthetic biased datasets, image batches and image files for fast unit tests."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from lnl_cli.data.base import Batch, BiasedDataset, BiasedSplit
from lnl_cli.data.colored_mnist import NORMALISE_MEAN, NORMALISE_STD, color_bin_targets


def tiny_dataset(n: int = 64, classes: int = 10, seed: int = 0, with_val: bool = True) -> BiasedDataset:
    """Train (colour = class), test and validation (colour independent of the class) splits of n images."""
    generator = torch.Generator().manual_seed(seed)

    def split(biased: bool) -> BiasedSplit:
        labels = torch.randint(0, classes, (n,), generator=generator)
        bias = labels.clone() if biased else torch.randint(0, classes, (n,), generator=generator)
        stroke = (torch.rand(n, 1, 28, 28, generator=generator) > 0.7).to(torch.uint8)
        colors = (bias.float()[:, None] * 25 + torch.tensor([10.0, 60.0, 120.0])).clamp(1, 255).to(torch.uint8)
        images = stroke * colors[:, :, None, None]
        return BiasedSplit(images, labels, bias, color_bin_targets(images, 8))

    train, test = split(True), split(False)
    return BiasedDataset(train, test, classes, classes, 8, NORMALISE_MEAN, NORMALISE_STD, "tiny",
                         val=split(False) if with_val else None)


def image_batch(classes=2, bias_classes=3, size=64, n=8):
    """A fixed batch of random RGB images with `classes` labels and `bias_classes` bias values."""
    generator = torch.Generator().manual_seed(0)
    return Batch(torch.randn(n, 3, size, size, generator=generator), torch.randint(0, classes, (n,), generator=generator),
                 torch.randint(0, bias_classes, (n,), generator=generator), None)


def save(image: torch.Tensor, path: Path) -> None:
    """C x H x W uint8 tensor to an image file (format from the suffix; 1 channel = grayscale)."""
    array = image.permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path, quality=95)
