"""What the probes read: a layer's frozen features, or the input itself, of the split that supplies them.

Apart from the fitting because it is the only part that touches the model and the data set: everything
downstream sees plain feature matrices. The input is read in two views (pooled pixels, per-channel
statistics), since the ceiling must catch a bias a linear probe on pixels cannot compute.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lnl_cli.algorithms import Algorithm
from lnl_cli.data.base import BiasedDataset, Split, iterate_batches
from lnl_cli.errors import ConfigError
from lnl_cli.probe_settings import INPUT_LAYER

if TYPE_CHECKING:
    from lnl_cli.config import Config

FEATURE_BATCH_SIZE = 1024
# The input ceiling (and --layer input) reads the images average-pooled to at most this many pixels a side:
# 128-224 px images of every test sample as floats would need gigabytes, and a probe with one weight per
# pixel of them would mostly fit noise. Smaller images (Colored-MNIST's 28 px) are used as they are.
INPUT_MAX_SIDE = 32
PIXELS_VIEW = "pixels"  # the input view --layer input probes


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


def split_name(config: "Config", source: str) -> str:
    """Which data a probe read, as a report and `lnl compare` name it: the source, and the file or split the
    config names for it (``test:balanced_test.csv``; plain ``test`` where the dataset has one test set)."""
    named = getattr(config.data, source, None)
    return f"{source}:{Path(named).name}" if isinstance(named, str) and named else source


def source_split(dataset: BiasedDataset, source: str) -> Split:
    """The split that supplies the probe data; a ConfigError for a validation split the dataset lacks."""
    if source == "val":
        if dataset.val is None:
            raise ConfigError(f"this dataset has no validation split ({dataset.description}); "
                              "use --source test or --source train")
        return dataset.val
    return dataset.test if source == "test" else dataset.train
