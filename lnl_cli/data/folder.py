"""Your own photos as folders, no CSV to write: one sub-folder per class, as torchvision's ImageFolder.

    photos/                       data.root (or --data-root)
      train/cat/*.jpg             data.train (default: train)
      train/dog/*.jpg
      val/...                     data.val (default: val, when it exists)
      test/...                    data.test (default: test)

The bias of each photo comes from ``data.bias_from``:

- ``none``: no bias attribute (every photo has the one value ``none``); enough for a baseline, evaluate
  and predict. The debiasing methods and probe-bias need a bias with at least two values.
- ``subfolder``: one more folder level below the class: ``train/cat/indoor/*.jpg``.
- ``pattern``: a regular expression searched in the file name, whose group ``bias`` is the value:
  ``data.bias_pattern: '^(?P<bias>[a-z]+)_'`` reads ``indoor`` from ``indoor_0001.jpg``.

Classes and bias values sort in natural order (``2`` before ``10``) unless data.classes /
data.bias_classes give the order. Every problem (a missing folder, a class without photos, a file name
the pattern does not match, a test class never seen in training) is a one-line DataError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Union

from lnl_cli.data.base import BiasedDataset, DatasetSpec, resolve_data_root
from lnl_cli.data.images import ImageOptions, build_image_dataset, wants_validation
from lnl_cli.data.manifest import ManifestRows, check_first_images, natural_order, split_records
from lnl_cli.errors import DataError
from lnl_cli.fileio import expand_path
from lnl_cli.schema import option

if TYPE_CHECKING:
    from lnl_cli.config import Config

# What PIL decodes and cameras and phones write; other files in the folders (notes, .DS_Store) are skipped.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
DEFAULT_SPLITS = {"train": "train", "val": "val", "test": "test"}
NO_BIAS = "none"  # the one bias value of data.bias_from=none
BIAS_GROUP = "bias"


@dataclass
class FolderOptions(ImageOptions):
    """The ``data.*`` keys of data.type=folder (with the image keys and data.train/val/test as folders)."""

    bias_from: Literal["none", "subfolder", "pattern"] = option(
        "none", "folder: where a photo's bias value comes from: none (no bias attribute), subfolder (a folder "
                "level below the class: train/<class>/<bias>/), pattern (data.bias_pattern on the file name)")
    bias_pattern: Union[str, None] = option(
        None, "folder, with bias_from=pattern: a regular expression searched in each file name; its group named "
              "'bias' is the photo's bias value, e.g. '^(?P<bias>[a-z]+)_'", max_length=1000)


def _split_folder(root: Path, name: str | None, split: str) -> Path:
    path = expand_path(name or DEFAULT_SPLITS[split])
    return path if path.is_absolute() else root / path


def _photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _bias_of(photo: Path, class_folder: Path, data, pattern: re.Pattern | None) -> str:
    if data.bias_from == "none":
        return NO_BIAS
    if data.bias_from == "subfolder":
        parts = photo.relative_to(class_folder).parts
        if len(parts) < 2:
            raise DataError(f"{photo}: with data.bias_from=subfolder every photo sits in a bias folder below its "
                            f"class ({class_folder.name}/<bias>/{photo.name})")
        return parts[0]
    match = pattern.search(photo.name) if pattern else None
    if match is None or not match.group(BIAS_GROUP):
        raise DataError(f"{photo}: data.bias_pattern {pattern.pattern if pattern else None!r} does not match "
                        f"the file name")
    return match.group(BIAS_GROUP)


def read_folder(folder: Path, data) -> ManifestRows:
    """One split's photos as manifest rows (the row number is the photo's position in sorted order)."""
    if not folder.exists():
        raise DataError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, not a folder of class folders (a CSV list of images is "
                        f"data.type=manifest)")
    pattern = re.compile(data.bias_pattern) if data.bias_from == "pattern" else None
    rows = ManifestRows(folder, [], [], [], [])
    classes = natural_order([p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")])
    if not classes:
        raise DataError(f"{folder} holds no class folders (expected {folder.name}/<class>/<photos>)")
    for label in classes:
        photos = _photos(folder / label)
        if not photos:
            raise DataError(f"{folder / label} holds no photos ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for photo in photos:
            rows.paths.append(photo)
            rows.rows.append(len(rows.rows) + 1)
            rows.labels.append(label)
            rows.bias.append(_bias_of(photo, folder / label, data, pattern))
    return rows


def _read_splits(config: Config, want_val: bool) -> tuple[ManifestRows, ManifestRows, ManifestRows | None, str]:
    data = config.data
    root = resolve_data_root(config)
    train = read_folder(_split_folder(root, data.train, "train"), data)
    test = read_folder(_split_folder(root, data.test, "test"), data)
    val_folder = _split_folder(root, data.val, "val")
    val = read_folder(val_folder, data) if want_val and (data.val is not None or val_folder.is_dir()) else None
    return train, test, val, f"the training folder {train.source}"


def load_folder_dataset(config: Config, with_train: bool = True) -> BiasedDataset:
    rows = _read_splits(config, wants_validation(config, with_train))
    train, test, val, classes, bias_classes = split_records(config, *rows)
    train_rows, test_rows, val_rows, _ = rows
    names = [split.source.name for split in (train_rows, val_rows, test_rows) if split is not None]
    return build_image_dataset(config, train, test, classes, bias_classes,
                               f"folder {' / '.join(names)} in {resolve_data_root(config)}", with_train, val=val)


def preflight(config: Config) -> None:
    """Every split folder reads (classes, photos, bias values) and each split's first photo decodes."""
    check_first_images(config, split_records(config, *_read_splits(config, wants_validation(config, True)))[:3])


def check_config(config: "Config") -> list[str]:
    data, problems = config.data, []
    if data.bias_from == "pattern":
        if data.bias_pattern is None:
            problems.append("data.bias_pattern: data.bias_from=pattern needs a regular expression with a group "
                            "named 'bias', e.g. '^(?P<bias>[a-z]+)_'")
        else:
            try:
                if BIAS_GROUP not in re.compile(data.bias_pattern).groupindex:
                    problems.append(f"data.bias_pattern: needs a group named 'bias' ((?P<bias>...)), got "
                                    f"{data.bias_pattern!r}")
            except re.error as exc:
                problems.append(f"data.bias_pattern: not a regular expression ({exc})")
    elif data.bias_pattern is not None:
        problems.append("data.bias_pattern: only read with data.bias_from=pattern")
    return problems


DATASET = DatasetSpec(
    summary="folder (your photos in train/<class>/ folders)", options=FolderOptions, load=load_folder_dataset,
    check=check_config, preflight=preflight)
