"""Datasets of image files (manifests, CelebA): decoding, in-memory and streaming splits.

Small datasets are decoded once into uint8 tensors and then behave exactly like Colored-MNIST
(whole tensors on the training device, batches sliced there). Large ones stream: a DataLoader
whose workers decode one whole batch each, so the main process only moves a uint8 batch to
the device and normalises it there.
"""

from __future__ import annotations

import contextlib
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal

import torch
from torch.utils.data import DataLoader, Dataset

from lnl_cli.data.base import (IGNORE_INDEX, Batch, BiasedDataset, BiasedSplit, majority_alignment,
                               normaliser)
from lnl_cli.errors import DataError
from lnl_cli.schema import option

if TYPE_CHECKING:
    from lnl_cli.config import Config

# torchvision's ImageNet statistics: the usual input normalisation for ResNets, pretrained or not.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RGB_CHANNELS = 3
BYTES_PER_MB = 1 << 20
MAX_WORKERS = 256


@dataclass
class ImageOptions:
    """The ``data.*`` keys every dataset of image files shares (manifest, folder, celeba)."""

    image_size: int = option(64, "manifest, folder, celeba: images are resized to this square size", min=8, max=1024)
    loading: Literal["auto", "memory", "stream"] = option(
        "auto", "manifest, folder, celeba: memory decodes every image once into uint8 tensors on the training device; "
                "stream decodes batches in DataLoader workers; auto: memory when it fits data.memory_limit_mb")
    memory_limit_mb: int = option(
        4096, "largest decoded dataset (all splits) that loading=auto keeps in memory", min=1)
    num_workers: int = option(4, "processes decoding images (stream) or threads (memory, once)", min=0,
                              max=MAX_WORKERS)


@dataclass
class ImageRecords:
    """One split's images as files: where each came from (for error messages) and its labels."""

    source: str                 # the file that listed them, e.g. train.csv
    paths: list[Path]
    rows: list[int]             # line of each image in `source`
    labels: torch.Tensor        # int64 class indices
    bias: torch.Tensor          # int64 bias indices

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, index: torch.Tensor) -> "ImageRecords":
        positions = index.tolist()
        return ImageRecords(self.source, [self.paths[i] for i in positions], [self.rows[i] for i in positions],
                            self.labels[index], self.bias[index])

    def random_subset(self, size: int | None, seed: int) -> "ImageRecords":
        """A seeded random subset of `size` images (all of them when size is None or larger)."""
        if size is None or size >= len(self):
            return self
        return self.take(torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:size])

    def check_files_exist(self) -> None:
        for path, row in zip(self.paths, self.rows):
            if not path.is_file():
                raise DataError(f"{self.source} row {row}: image not found: {path}")


@contextlib.contextmanager
def quiet_large_images() -> Iterator[None]:
    """Pillow's DecompressionBombWarning off while images are decoded here. Every image is resized to
    data.image_size, and one past twice Pillow's limit (MAX_IMAGE_PIXELS, 89 Mpx) still fails to open and
    is reported as a DataError naming its row, so a large image needs no raw warning per file (per
    worker). Entered by the thread that starts the decoding (filters are process-wide, the decoding
    threads see them), never inside a decoding thread."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def read_image(path: Path, size: int) -> torch.Tensor:
    """RGB uint8 image (3 x size x size) through Pillow: PNG, JPEG, GIF, WebP, BMP, TIFF, any mode
    (grayscale, palette, RGBA) converted to RGB; bilinear resize with antialiasing."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(size, size, RGB_CHANNELS).permute(2, 0, 1)


def _decode_error(records: ImageRecords, position: int, exc: Exception) -> str:
    reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return (f"{records.source} row {records.rows[position]}: cannot decode image "
            f"{records.paths[position]} ({reason})")


def decode_all(records: ImageRecords, size: int, workers: int) -> torch.Tensor:
    """Every image of `records` as one uint8 N x 3 x size x size tensor, decoded once by a thread pool
    (Pillow's decoders release the GIL while they work)."""
    images = torch.empty(len(records), RGB_CHANNELS, size, size, dtype=torch.uint8)

    def decode(position: int) -> None:
        try:
            images[position] = read_image(records.paths[position], size)
        except Exception as exc:  # any decoder failure is the file's fault, reported with its row
            raise DataError(_decode_error(records, position, exc)) from None

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    with quiet_large_images():
        try:
            list(pool.map(decode, range(len(records))))
        finally:  # after a failure or a signal only the decodes already running finish
            pool.shutdown(wait=True, cancel_futures=True)
    return images


def check_first_image(records: ImageRecords, size: int) -> None:
    """The first image of a split exists and decodes (what --dry-run checks before any training)."""
    first = records.take(torch.arange(min(1, len(records))))
    first.check_files_exist()
    decode_all(first, size, workers=1)


class _BatchDecoder(Dataset):
    """Item = one batch: the DataLoader's sampler yields index tensors, a worker decodes them all.

    Failures come back as a message, not an exception, so the main process can raise the project's
    one-line DataError instead of the DataLoader's wrapped traceback.
    """

    def __init__(self, records: ImageRecords, size: int):
        self.records, self.size = records, size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, str | None]:
        images = torch.empty(len(index), RGB_CHANNELS, self.size, self.size, dtype=torch.uint8)
        with quiet_large_images():
            for slot, position in enumerate(index.tolist()):
                try:
                    images[slot] = read_image(self.records.paths[position], self.size)
                except Exception as exc:
                    return images[:0], _decode_error(self.records, position, exc)
        return images, None


class StreamingSplit:
    """A split whose images stay on disk; labels and bias live on the training device."""

    def __init__(self, records: ImageRecords, size: int, num_workers: int, device: torch.device | str = "cpu"):
        self.records, self.size, self.num_workers = records, size, num_workers
        self.device = torch.device(device)
        self.labels = records.labels.to(self.device)
        self.bias = records.bias.to(self.device)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def index_device(self) -> torch.device:
        return torch.device("cpu")  # the decoding workers read the indices

    def to(self, device: torch.device | str) -> "StreamingSplit":
        return StreamingSplit(self.records, self.size, self.num_workers, device)

    def subset(self, index: torch.Tensor) -> "StreamingSplit":
        return StreamingSplit(self.records.take(index.cpu()), self.size, self.num_workers, self.device)

    def batches(self, chunks: list[torch.Tensor], mean: tuple[float, ...], std: tuple[float, ...]) -> Iterator[Batch]:
        loader = DataLoader(_BatchDecoder(self.records, self.size), batch_size=None, sampler=chunks,
                            num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        mean_t, std_t = normaliser(mean, std, self.device)
        for index, (images, error) in zip(chunks, loader):
            if error is not None:
                raise DataError(error)
            images = images.to(self.device, non_blocking=True).float().div_(255.0).sub_(mean_t).div_(std_t)
            index = index.to(self.device, non_blocking=True)
            yield Batch(images, self.labels[index], self.bias[index], None)


def decoded_megabytes(sizes: list[int], image_size: int) -> float:
    return sum(sizes) * RGB_CHANNELS * image_size * image_size / BYTES_PER_MB


def _empty_split() -> BiasedSplit:
    empty = torch.zeros(0, dtype=torch.long)
    return BiasedSplit(torch.zeros(0, RGB_CHANNELS, 1, 1, dtype=torch.uint8), empty, empty.clone())


# Offsets of data.seed for each split's random subset, so that the three subsets are drawn independently.
TRAIN_SUBSET_SEED, TEST_SUBSET_SEED, VAL_SUBSET_SEED = 1, 2, 3


def wants_validation(config: "Config", with_train: bool) -> bool:
    """Whether a loader should read its validation split: only with the training split (validation
    serves training's per-epoch metrics and model selection; commands that read the test set alone skip
    it, so a missing validation file cannot break them), and not when data.val_size=0 turns it off."""
    return with_train and config.data.val_size != 0


def build_image_dataset(config: "Config", train: ImageRecords, test: ImageRecords, class_names: list[str],
                        bias_names: list[str], description: str, with_train: bool = True,
                        val: ImageRecords | None = None) -> BiasedDataset:
    """Subsets, memory-or-stream choice, normalisation and the shortcut table, shared by every image source.

    The shortcut table (`aligned`) comes from the whole training split alone: it describes what training
    offers, and validation must not shape it any more than the test set does."""
    data = config.data
    if len(class_names) < 2:
        raise DataError(f"{train.source}: needs at least 2 classes, found {len(class_names)} ({class_names})")
    if len(bias_names) >= IGNORE_INDEX:
        raise DataError(f"{train.source}: {len(bias_names)} bias values; at most {IGNORE_INDEX - 1} are supported")
    aligned = majority_alignment(train.labels, train.bias, len(class_names), len(bias_names))
    train = train.random_subset(data.train_size, data.seed + TRAIN_SUBSET_SEED)
    test = test.random_subset(data.test_size, data.seed + TEST_SUBSET_SEED)
    if val is not None and wants_validation(config, with_train):
        val = val.random_subset(data.val_size, data.seed + VAL_SUBSET_SEED)
    else:
        val = None
    used = [records for records in (train, val, test) if records is not None] if with_train else [test]
    for records in used:
        records.check_files_exist()
    fits = decoded_megabytes([len(r) for r in used], data.image_size) <= data.memory_limit_mb
    in_memory = data.loading == "memory" or (data.loading == "auto" and fits)

    def make_split(records: ImageRecords):
        if in_memory:
            return BiasedSplit(decode_all(records, data.image_size, data.num_workers), records.labels, records.bias)
        return StreamingSplit(records, data.image_size, data.num_workers)

    return BiasedDataset(
        train=make_split(train) if with_train else _empty_split(),
        test=make_split(test),
        val=None if val is None else make_split(val),
        num_classes=len(class_names), num_bias_classes=len(bias_names), bias_bins=0,
        mean=tuple(data.mean) or IMAGENET_MEAN, std=tuple(data.std) or IMAGENET_STD,
        description=description, class_names=tuple(class_names), bias_names=tuple(bias_names), aligned=aligned)
