"""Biased datasets and the batch iterator of the training loop.

An in-memory split is a handful of whole tensors (uint8 images, labels, bias attribute,
optional per-pixel bias targets). They are moved to the training device once; a batch is a
slice of a permutation, normalised there in one tensor op: no per-sample Python, no
DataLoader. Datasets too large for memory use a streaming split (data/images.py) with the
same interface.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

import torch

from lnl_cli.data import sampling
from lnl_cli.fileio import expand_path

if TYPE_CHECKING:
    from lnl_cli.config import Config

IGNORE_INDEX = 255
# A bias attribute with fewer values says nothing: the debiasing methods and probe-bias need this many.
MIN_BIAS_VALUES = 2


@dataclass
class Batch:
    images: torch.Tensor        # float, normalised
    labels: torch.Tensor
    bias: torch.Tensor
    bias_targets: torch.Tensor | None  # int64 per-pixel bins with IGNORE_INDEX (Colored-MNIST), else None


class Split(Protocol):
    """What the engine, metrics and probe need of a split, in memory or streamed."""

    labels: torch.Tensor        # int64, N, on the split's device
    bias: torch.Tensor          # int64, N: the bias attribute (e.g. mean-colour index)

    def __len__(self) -> int: ...

    @property
    def index_device(self) -> torch.device:
        """Where the sample indices of a batch should live (the data's device, or the CPU for files)."""
        ...

    def to(self, device: torch.device | str) -> "Split": ...

    def subset(self, index: torch.Tensor) -> "Split": ...

    def batches(self, chunks: list[torch.Tensor], mean: tuple[float, ...], std: tuple[float, ...]) -> Iterator[Batch]:
        """One normalised batch per index tensor in `chunks`."""
        ...


@dataclass
class BiasedSplit:
    images: torch.Tensor        # uint8, N x C x H x W
    labels: torch.Tensor        # int64, N
    bias: torch.Tensor          # int64, N: the bias attribute (e.g. mean-colour index)
    bias_targets: torch.Tensor | None = None  # uint8, N x 3 x h x w: per-pixel colour bins, IGNORE_INDEX off-stroke

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _map(self, fn) -> "BiasedSplit":
        return BiasedSplit(**{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                              for f in fields(self)})

    def to(self, device: torch.device | str) -> "BiasedSplit":
        return self._map(lambda t: t.to(device))

    def subset(self, index: torch.Tensor) -> "BiasedSplit":
        return self._map(lambda t: t[index])

    @property
    def index_device(self) -> torch.device:
        return self.labels.device

    def batches(self, chunks: list[torch.Tensor], mean: tuple[float, ...], std: tuple[float, ...]) -> Iterator[Batch]:
        mean_t, std_t = normaliser(mean, std, self.labels.device)
        for index in chunks:
            yield make_batch(self, index, mean_t, std_t)


@dataclass
class BiasedDataset:
    train: Split
    test: Split
    num_classes: int
    num_bias_classes: int
    bias_bins: int              # classes per pixel and channel of the per-pixel colour head
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    class_names: tuple[str, ...] = ()
    bias_names: tuple[str, ...] = ()
    # num_classes x num_bias_classes, True where a (label, bias) pair is the training set's shortcut;
    # None: the bias index equals the label index (Colored-MNIST's colour i belongs to digit i).
    aligned: torch.Tensor | None = None
    # Held out of training for per-epoch metrics and model selection (train.select); None: no validation
    # split, so epochs report losses only. The test set is read once, at the end, never for decisions.
    val: Split | None = None

    @property
    def in_channels(self) -> int:
        return len(self.mean)

    def aligned_mask(self) -> torch.Tensor:
        if self.aligned is not None:
            return self.aligned.cpu()
        mask = torch.zeros(self.num_classes, self.num_bias_classes, dtype=torch.bool)
        size = min(mask.shape)
        mask[torch.arange(size), torch.arange(size)] = True
        return mask

    def to(self, device: torch.device | str) -> "BiasedDataset":
        return replace(self, train=self.train.to(device), test=self.test.to(device),
                       val=None if self.val is None else self.val.to(device))


def majority_alignment(labels: torch.Tensor, bias: torch.Tensor, num_classes: int,
                       num_bias_classes: int) -> torch.Tensor:
    """The shortcut a biased training set offers: for each label, its most frequent bias value."""
    counts = torch.bincount(labels * num_bias_classes + bias, minlength=num_classes * num_bias_classes)
    counts = counts.view(num_classes, num_bias_classes)
    mask = torch.zeros_like(counts, dtype=torch.bool)
    mask[torch.arange(num_classes), counts.argmax(dim=1)] = True
    return mask & (counts > 0)


def normaliser(mean: tuple[float, ...], std: tuple[float, ...], device) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(mean, device=device).view(1, -1, 1, 1), torch.tensor(std, device=device).view(1, -1, 1, 1))


def make_batch(split: BiasedSplit, index: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> Batch:
    images = split.images[index].float().div_(255.0).sub_(mean).div_(std)
    targets = None if split.bias_targets is None else split.bias_targets[index].long()
    return Batch(images, split.labels[index], split.bias[index], targets)


def iterate_batches(
    split: Split,
    batch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    start_batch: int = 0,
    shard: tuple[int, int] = (0, 1),
    sampler: str = sampling.UNIFORM,
) -> Iterator[Batch]:
    """Batches of `split` on its own device; the permutation is drawn on the CPU so that it is
    reproducible across devices from the same generator. `start_batch` skips batches already
    trained (a resumed epoch).

    `shard=(rank, world)`: every process draws the same permutation and takes the share
    ``global_batch[rank::world]`` of each global batch. A last batch is cut to a multiple of
    `world` (at most world - 1 samples left out, different ones each epoch), so shares are always
    equal and averaging their gradients equals one process's step on the global batch. `sampler`
    (train.sampler) says which images the epoch draws (:mod:`lnl_cli.data.sampling`)."""
    rank, world = shard
    order = sampling.epoch_order(split.labels, split.bias, sampler, generator, shuffle)
    chunks = list(order.to(split.index_device).split(batch_size))[start_batch:]
    if world > 1:
        chunks = [chunk[:len(chunk) - len(chunk) % world][rank::world] for chunk in chunks]
        chunks = [chunk for chunk in chunks if len(chunk)]
    return split.batches(chunks, mean, std)


def num_batches(n: int, batch_size: int, world: int = 1) -> int:
    """Batches per epoch; with `world` processes a last batch smaller than `world` is dropped."""
    return n // batch_size + (n % batch_size >= world)


def cache_dir() -> Path:
    """User cache folder for generated data: $LNL_CACHE_DIR, else $XDG_CACHE_HOME/lnl, else ~/.cache/lnl."""
    if os.environ.get("LNL_CACHE_DIR"):
        return expand_path(os.environ["LNL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lnl"


def resolve_data_root(config: Config) -> Path:
    """data.root if set, else $LNL_DATA_ROOT, else ~/.cache/lnl/data."""
    if config.data.root:
        return expand_path(config.data.root)
    if os.environ.get("LNL_DATA_ROOT"):
        return expand_path(os.environ["LNL_DATA_ROOT"])
    return cache_dir() / "data"


@dataclass(frozen=True)
class DatasetSpec:
    """What the rest of lnl needs of a dataset type; each dataset module defines one, and the registry
    in :mod:`lnl_cli.data` lists them under their ``data.type`` name.

    `options` is a dataclass of the dataset's own ``data.*`` keys (the config merges them into the
    ``data`` section), `check` returns the problems of a config that chose this dataset (collected
    with every other config problem into one error), and `load` builds both splits on the CPU
    (`with_train=False` skips the training split for commands that only read the test set)."""

    summary: str
    options: type
    load: Callable[["Config", bool], BiasedDataset]
    # Side of the square images the networks see, from the config: what `lnl predict` resizes files to.
    image_size: Callable[["Config"], int] = lambda config: config.data.image_size
    check: Callable[["Config"], list[str]] = lambda config: []
    # Whether the config gives this data a validation split, when that is known without loading it
    # (None: only the data can tell, e.g. a manifest's split column); what `lnl train --dry-run` checks.
    has_validation: Callable[["Config"], bool | None] = lambda config: None
    # Gives per-pixel bias targets (Batch.bias_targets): what the paper's colour heads predict.
    pixel_bias_targets: bool = False
    # What `lnl train --dry-run` looks at on disk without loading the data (that it exists, the first
    # rows and files); raises the DataError loading would raise. Loading checks everything anyway.
    preflight: Callable[["Config"], None] = lambda config: None
