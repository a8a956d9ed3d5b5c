"""Colored-MNIST, the paper's protocol, generated from real MNIST.

Train: the stroke of a digit of class y is filled with clip(mean[y] + N(0, sigma^2 I), 0, 1);
test: the same with a mean colour drawn uniformly, independent of the label. The index of
the mean colour is each image's bias attribute.

Validation (the project's protocol choice, not the paper's): ``data.val_size`` digits are held out of
the 60,000 training digits and coloured by the *test* protocol, so per-epoch metrics and model selection
see bias-conflicting images without ever reading the test set. The training set keeps the other digits
with exactly the colours they would have had without a validation split. Generation is vectorised and cached per
parameter set and per MNIST source (the files' resolved paths, sizes and modification times) in
the user cache folder, with a checksum so a damaged file is rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from lnl_cli.data.base import IGNORE_INDEX, BiasedDataset, BiasedSplit, DatasetSpec, cache_dir, resolve_data_root
from lnl_cli.errors import DataError
from lnl_cli.fileio import atomic_write, atomic_write_text
from lnl_cli.schema import option

if TYPE_CHECKING:
    from lnl_cli.config import Config

# Input normalisation of the official implementation (it reuses CIFAR-10's statistics);
# the network's input batch norm makes the exact values immaterial.
NORMALISE_MEAN = (0.4914, 0.4822, 0.4465)
NORMALISE_STD = (0.2023, 0.1994, 0.2010)
CACHE_FORMAT = 2  # 2: keyed on the MNIST source files too
# The validation digits' own random streams (which digits, which colours), apart from train's and test's.
VAL_SEED_OFFSET = 1_000_003
# Which colour-head targets are ignored: "channel" (the official code: each channel where it is 0) or
# "pixel" (only where all three channels are 0, i.e. the background).
BIAS_MASKS = ("channel", "pixel")
NUM_DIGITS = 10
MNIST_SIDE = 28
RGB_MAX = 255
MNIST_TRAIN_DIGITS = 60_000
MAX_VAL_DIGITS = MNIST_TRAIN_DIGITS // 2  # the rest must still be enough to train on
DEFAULT_VAL_DIGITS = 5000  # data.val_size=null: held out of MNIST's 60,000 training digits
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def load_mnist(root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Grayscale digits (uint8, N x 28 x 28) and labels through torchvision's MNIST reader."""
    from torchvision.datasets import MNIST

    raw = root / "MNIST" / "raw"
    try:
        dataset = MNIST(root=str(root), train=train, download=download)
    except RuntimeError as exc:
        if "not found" not in str(exc).lower():
            raise DataError(f"cannot read MNIST in {raw}: {exc}") from None
        raise DataError(_not_found(raw)) from None
    except OSError as exc:
        raise DataError(f"cannot read or download MNIST into {raw}: {exc}") from None
    except (AssertionError, TypeError, ValueError, KeyError, IndexError, MemoryError) as exc:
        # torchvision's IDX reader asserts on a bad header and fails in other ways on bad contents
        raise DataError(f"cannot read MNIST in {raw}: a {'training' if train else 'test'} file is corrupt "
                        f"({type(exc).__name__}{': ' + str(exc)[:120] if str(exc) else ''})") from None
    digits, labels = dataset.data, dataset.targets
    if (digits.dtype != torch.uint8 or digits.dim() != 3 or tuple(digits.shape[1:]) != (28, 28)
            or labels.dim() != 1 or len(labels) != len(digits) or len(labels) == 0
            or int(labels.min()) < 0 or int(labels.max()) >= NUM_DIGITS):
        raise DataError(f"cannot read MNIST in {raw}: the {'training' if train else 'test'} images and labels "
                        f"are not N 28x28 digits with N labels in 0..{NUM_DIGITS - 1}")
    return digits.clone(), labels.clone().long()


def _not_found(raw: Path) -> str:
    return (f"MNIST not found in {raw} (expected {', '.join(MNIST_FILES)}); point data.root, --data-root or "
            "LNL_DATA_ROOT at the folder holding MNIST/raw, or set data.download=true")


def mnist_source(root: Path) -> list[tuple[str, int, int]] | None:
    """What identifies the MNIST files under `root`: each file's resolved path, size and modification
    time (ns); None when one is missing. Generated data is cached per source, so another root, or a
    replaced file, is read for real."""
    raw = root / "MNIST" / "raw"
    source = []
    for name in MNIST_FILES:
        try:
            path = (raw / name).resolve()
            stat = path.stat()
        except (OSError, ValueError, RuntimeError):  # missing, unreadable, a NUL byte, a symlink loop
            return None
        source.append((str(path), stat.st_size, stat.st_mtime_ns))
    return source


def colorize(
    digits: torch.Tensor,
    color_index: torch.Tensor,
    class_colors: torch.Tensor,
    color_var: float,
    threshold: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """RGB uint8 images: stroke pixels take the image's jittered colour, background stays black."""
    noise = torch.randn(len(color_index), 3, generator=generator) * color_var ** 0.5
    colors = (class_colors[color_index] + noise).clamp_(0.0, 1.0)
    colors_u8 = colors.mul_(255.0).round_().to(torch.uint8)
    stroke = (digits > threshold).to(torch.uint8)
    return stroke[:, None, :, :] * colors_u8[:, :, None, None]


def color_bin_targets(images: torch.Tensor, bins: int, mask: str = "channel") -> torch.Tensor:
    """Per-pixel colour bins of the half-resolution image (what the bias head predicts).

    The downsampling takes pixel 2i+1, as PIL's nearest-neighbour resize to 14x14 does in the
    official code. mask="channel" (official) ignores each channel's target wherever that channel is 0,
    so a pure red stroke is a target for the red head only; mask="pixel" ignores only background pixels
    (all channels zero).
    """
    small = images[:, :, 1::2, 1::2]
    targets = (small.long() * bins // 256).to(torch.uint8)
    if mask not in BIAS_MASKS:
        raise ValueError(f"mask must be one of {BIAS_MASKS}, got {mask!r}")
    ignored = small == 0 if mask == "channel" else (small == 0).all(dim=1, keepdim=True).expand_as(targets)
    return targets.masked_fill(ignored, IGNORE_INDEX)


def _generate(config: Config, train: bool, digits: torch.Tensor, labels: torch.Tensor,
              seed: int | None = None) -> dict[str, torch.Tensor]:
    """Training colours (the class's mean colour) when `train`, else the test protocol (a random mean
    colour per image); `seed` replaces the split's default random stream."""
    data = config.data
    generator = torch.Generator().manual_seed(data.seed * 2 + (0 if train else 1) if seed is None else seed)
    class_colors = torch.tensor(data.class_colors, dtype=torch.float32) / 255.0
    if train:
        bias = labels.clone()
    else:
        bias = torch.randint(0, len(class_colors), (len(labels),), generator=generator)
    images = colorize(digits, bias, class_colors, data.color_var, data.stroke_threshold, generator)
    return {"images": images, "labels": labels, "bias": bias}


def val_digits(config: Config) -> int:
    """How many training digits are held out for validation (data.val_size; null: the default)."""
    return DEFAULT_VAL_DIGITS if config.data.val_size is None else config.data.val_size


def validation_index(num_train_digits: int, val_size: int, seed: int) -> torch.Tensor:
    """Which of the training digits are held out for validation (a seeded random choice, sorted)."""
    if val_size <= 0:
        return torch.zeros(0, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed + VAL_SEED_OFFSET)
    return torch.randperm(num_train_digits, generator=generator)[:val_size].sort().values


def _cache_key(config: Config, split: str, source: list[tuple[str, int, int]]) -> str:
    data = config.data
    params = {
        "format": CACHE_FORMAT, "split": split, "color_var": data.color_var,
        "seed": data.seed, "class_colors": data.class_colors, "stroke_threshold": data.stroke_threshold,
        "source": source,
    }
    if split == "val":
        params["val_size"] = val_digits(config)
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:20]


def _file_sha256(path: Path) -> str:
    """Streamed, so checking a 140 MB cache does not hold a second copy of it in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        expected = path.with_suffix(".sha256").read_text().strip()
        if _file_sha256(path) != expected:
            return None
        tensors = torch.load(path, weights_only=True)
    except Exception:  # a missing or damaged cache is rebuilt, whatever the unpickler says
        return None
    if not isinstance(tensors, dict) or set(tensors) != {"images", "labels", "bias"}:
        return None
    return tensors


def _write_cache(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    payload = buffer.getvalue()
    try:
        atomic_write(path, lambda handle: handle.write(payload))
        atomic_write_text(path.with_suffix(".sha256"), hashlib.sha256(payload).hexdigest() + "\n")
    except OSError:
        pass  # an unwritable cache only costs regeneration next time


def _cache_path(config: Config, split: str, source: list[tuple[str, int, int]]) -> Path:
    return cache_dir() / "colored_mnist" / f"{split}-{_cache_key(config, split, source)}.pt"


def _generate_split(config: Config, split: str, root: Path) -> dict[str, torch.Tensor]:
    """train: every training digit with its class colour (the held-out ones are dropped later, so the
    others keep their colours whatever val_size is); val: the held-out digits, test protocol; test."""
    digits, labels = load_mnist(root, split != "test", config.data.download)  # a missing root fails here
    if split != "val":
        return _generate(config, split == "train", digits, labels)
    _check_val_size(config, len(labels))
    index = validation_index(len(labels), val_digits(config), config.data.seed)
    return _generate(config, False, digits[index], labels[index], seed=config.data.seed + VAL_SEED_OFFSET)


def _load_split(config: Config, split: str) -> dict[str, torch.Tensor]:
    """One split ("train", "val" or "test"), from the cache entry of these parameters and these MNIST
    files, else generated."""
    root = resolve_data_root(config)
    source = mnist_source(root)
    tensors = _read_cache(_cache_path(config, split, source)) if source is not None else None
    if tensors is None:
        tensors = _generate_split(config, split, root)
        source = source or mnist_source(root)  # present now if torchvision just downloaded it
        if source is not None:
            _write_cache(_cache_path(config, split, source), tensors)
    return tensors


def _check_val_size(config: Config, num_train_digits: int) -> None:
    if val_digits(config) >= num_train_digits:
        raise DataError(f"data.val_size={val_digits(config)} leaves no training digits (this MNIST has "
                        f"{num_train_digits}); use a smaller data.val_size")


def _without_validation(tensors: dict[str, torch.Tensor], config: Config) -> dict[str, torch.Tensor]:
    _check_val_size(config, len(tensors["labels"]))
    held_out = validation_index(len(tensors["labels"]), val_digits(config), config.data.seed)
    if len(held_out) == 0:
        return tensors
    keep = torch.ones(len(tensors["labels"]), dtype=torch.bool)
    keep[held_out] = False
    return {name: t[keep] for name, t in tensors.items()}


def _take_subset(tensors: dict[str, torch.Tensor], size: int | None, seed: int) -> dict[str, torch.Tensor]:
    n = len(tensors["labels"])
    if size is None or size >= n:
        return tensors
    index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]
    return {name: t[index] for name, t in tensors.items()}


def _empty_split() -> dict[str, torch.Tensor]:
    return {"images": torch.zeros(0, 3, MNIST_SIDE, MNIST_SIDE, dtype=torch.uint8),
            "labels": torch.zeros(0, dtype=torch.long), "bias": torch.zeros(0, dtype=torch.long)}


def load_colored_mnist(config: Config, with_train: bool = True) -> BiasedDataset:
    """Both splits; `with_train=False` leaves the training split empty (evaluation needs only the test set)."""
    data = config.data
    splits = {}
    for split, size in (("train", data.train_size), ("val", None), ("test", data.test_size)):
        if (split == "train" and not with_train) or (split == "val" and val_digits(config) == 0):
            tensors = _empty_split()
        elif split == "train":
            tensors = _take_subset(_without_validation(_load_split(config, split), config), size, data.seed + 1)
        else:
            tensors = _take_subset(_load_split(config, split), size, data.seed + 1)
        splits[split] = BiasedSplit(
            images=tensors["images"], labels=tensors["labels"], bias=tensors["bias"],
            bias_targets=color_bin_targets(tensors["images"], data.color_bins, data.bias_mask))
    num_colors = len(data.class_colors)
    return BiasedDataset(
        train=splits["train"], test=splits["test"], val=splits["val"] if val_digits(config) else None,
        num_classes=10, num_bias_classes=num_colors,
        bias_bins=data.color_bins, mean=NORMALISE_MEAN, std=NORMALISE_STD,
        description=f"Colored-MNIST (sigma^2={data.color_var:g})")


@dataclass
class ColoredMnistOptions:
    """The ``data.*`` keys of Colored-MNIST."""

    download: bool = option(False, "colored_mnist: let torchvision download MNIST when it is missing")
    color_var: float = option(0.02, "colored_mnist: sigma^2 of the colour jitter on the [0,1] scale", min=0.0)
    class_colors: list[list[int]] = option(factory=list, help="colored_mnist: mean RGB colour (0-255) of each class")
    stroke_threshold: int = option(128, "colored_mnist: grayscale value above which a pixel is digit stroke",
                                   min=0, max=254)
    color_bins: int = option(8, "colored_mnist: bins per colour channel that the bias head predicts", min=2, max=256)
    bias_mask: Literal["channel", "pixel"] = option(
        "channel", "colored_mnist: colour-head targets ignored where that channel is 0 (channel, the official "
                   "code) or only on the background (pixel)")


def check_config(config: "Config") -> list[str]:
    colors = config.data.class_colors
    if val_digits(config) > MAX_VAL_DIGITS:
        return [f"data.val_size: colored_mnist holds out at most {MAX_VAL_DIGITS} of the {MNIST_TRAIN_DIGITS} "
                f"training digits for validation, got {val_digits(config)}"]
    if len(colors) != NUM_DIGITS:
        return [f"data.class_colors: colored_mnist needs {NUM_DIGITS} RGB triples, got {len(colors)}"]
    if any(len(c) != 3 or not all(0 <= v <= RGB_MAX for v in c) for c in colors):
        return [f"data.class_colors: every colour must be three integers in 0..{RGB_MAX}"]
    return []


def preflight(config: "Config") -> None:
    """MNIST's four files are where data.root says (or data.download fetches them)."""
    root = resolve_data_root(config)
    if not config.data.download and mnist_source(root) is None:
        raise DataError(_not_found(root / "MNIST" / "raw"))


DATASET = DatasetSpec(
    summary="colored_mnist (generated from MNIST)", options=ColoredMnistOptions, load=load_colored_mnist,
    image_size=lambda config: MNIST_SIDE, check=check_config, pixel_bias_targets=True,
    has_validation=lambda config: val_digits(config) > 0, preflight=preflight)
