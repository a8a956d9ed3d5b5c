"""In-memory biased datasets and the batch iterator of the training loop.

A split is a handful of whole tensors (uint8 images, labels, bias attribute, per-pixel
bias targets). They are moved to the training device once; a batch is a slice of a
permutation, normalised there in one tensor op: no per-sample Python, no DataLoader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator

import torch

from lnl_cli.config import Config

IGNORE_INDEX = 255


@dataclass
class BiasedSplit:
    images: torch.Tensor        # uint8, N x C x H x W
    labels: torch.Tensor        # int64, N
    bias: torch.Tensor          # int64, N: the bias attribute (e.g. mean-colour index)
    bias_targets: torch.Tensor  # uint8, N x 3 x h x w: per-pixel colour bins, IGNORE_INDEX on background

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> "BiasedSplit":
        return BiasedSplit(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def subset(self, index: torch.Tensor) -> "BiasedSplit":
        return BiasedSplit(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


@dataclass
class Batch:
    images: torch.Tensor        # float, normalised
    labels: torch.Tensor
    bias: torch.Tensor
    bias_targets: torch.Tensor  # int64 with IGNORE_INDEX


@dataclass
class BiasedDataset:
    train: BiasedSplit
    test: BiasedSplit
    num_classes: int
    num_bias_classes: int
    bias_bins: int              # classes per pixel and channel of the bias head
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str

    def to(self, device: torch.device | str) -> "BiasedDataset":
        return BiasedDataset(self.train.to(device), self.test.to(device), self.num_classes,
                             self.num_bias_classes, self.bias_bins, self.mean, self.std, self.description)


def make_batch(split: BiasedSplit, index: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> Batch:
    images = split.images[index].float().div_(255.0).sub_(mean).div_(std)
    return Batch(images, split.labels[index], split.bias[index], split.bias_targets[index].long())


def iterate_batches(
    split: BiasedSplit,
    batch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    start_batch: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[Batch]:
    """Batches of `split` on its own device; the permutation is drawn on the CPU so that it is
    reproducible across devices from the same generator. `start_batch` skips batches already
    trained (a resumed epoch).

    `shard=(rank, world)`: every process draws the same permutation and takes the share
    ``global_batch[rank::world]`` of each global batch. A last batch is cut to a multiple of
    `world` (at most world - 1 samples left out, different ones each epoch), so shares are always
    equal and averaging their gradients equals one process's step on the global batch."""
    rank, world = shard
    device = split.labels.device
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(device)
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    for start in range(start_batch * batch_size, n, batch_size):
        index = order[start:start + batch_size]
        if world > 1:
            index = index[:len(index) - len(index) % world][rank::world]
            if not len(index):
                return
        yield make_batch(split, index, mean_t, std_t)


def num_batches(n: int, batch_size: int, world: int = 1) -> int:
    """Batches per epoch; with `world` processes a last batch smaller than `world` is dropped."""
    return n // batch_size + (n % batch_size >= world)


def cache_dir() -> Path:
    """User cache folder for generated data: $LNL_CACHE_DIR, else $XDG_CACHE_HOME/lnl, else ~/.cache/lnl."""
    if os.environ.get("LNL_CACHE_DIR"):
        return Path(os.environ["LNL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lnl"


def resolve_data_root(config: Config) -> Path:
    """data.root if set, else $LNL_DATA_ROOT, else ~/.cache/lnl/data."""
    if config.data.root:
        return Path(config.data.root).expanduser()
    if os.environ.get("LNL_DATA_ROOT"):
        return Path(os.environ["LNL_DATA_ROOT"]).expanduser()
    return cache_dir() / "data"


def load_dataset(config: Config, with_train: bool = True) -> BiasedDataset:
    """Build (or read from cache) the dataset the config names, on the CPU; `with_train=False` skips the
    training split for commands that only read the test set."""
    if config.data.name == "colored_mnist":
        from lnl_cli.data.colored_mnist import load_colored_mnist

        return load_colored_mnist(config, with_train)
    raise AssertionError(f"unhandled dataset {config.data.name}")  # config validation forbids this
