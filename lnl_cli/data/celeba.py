"""CelebA from a local folder in torchvision's layout: one attribute is the label, another the bias.

    <data.root>/celeba/img_align_celeba/*.jpg
    <data.root>/celeba/list_attr_celeba.txt
    <data.root>/celeba/list_eval_partition.txt

The two text files are parsed here rather than through ``torchvision.datasets.CelebA``, whose
constructor demands (and checksums) three more annotation files this task never reads; the layout,
attribute names and official splits are the same. The official ``valid`` partition is the
validation split (held out of training for per-epoch metrics and model selection) unless the
training or test split already reads it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lnl_cli.data.base import BiasedDataset, DatasetSpec, resolve_data_root
from lnl_cli.data.images import ImageOptions, ImageRecords, build_image_dataset, wants_validation
from lnl_cli.errors import ConfigError, DataError
from lnl_cli.schema import option

if TYPE_CHECKING:
    from lnl_cli.config import Config

BASE_FOLDER = "celeba"
IMAGE_FOLDER = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
ALL_SPLITS = "all"
SPLITS = (*SPLIT_CODES, ALL_SPLITS)
DEFAULT_SPLITS = ("train", "test")
DEFAULT_VAL_SPLIT = "valid"
ATTR_HEADER_LINES = 2  # image count, then the attribute names


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"CelebA file not found: {path} (expected torchvision's layout: "
                        f"{BASE_FOLDER}/{ATTR_FILE}, {BASE_FOLDER}/{PARTITION_FILE}, {BASE_FOLDER}/{IMAGE_FOLDER}/)")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def read_attributes(folder: Path) -> tuple[list[str], list[str], torch.Tensor, list[int]]:
    """(attribute names, file names, N x A tensor of 0/1, line numbers) from list_attr_celeba.txt."""
    path = folder / ATTR_FILE
    lines = _lines(path)
    if len(lines) <= ATTR_HEADER_LINES:
        raise DataError(f"{path} lists no images")
    names = lines[1].split()
    files, values, rows = [], [], []
    for line_number, line in enumerate(lines[ATTR_HEADER_LINES:], start=ATTR_HEADER_LINES + 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise DataError(f"{path} row {line_number}: expected a file name and {len(names)} values, "
                            f"got {len(parts)} fields")
        files.append(parts[0])
        values.append([int(v) > 0 for v in parts[1:]])
        rows.append(line_number)
    return names, files, torch.tensor(values, dtype=torch.long), rows


def read_partition(folder: Path) -> dict[str, int]:
    path = folder / PARTITION_FILE
    partition = {}
    for line_number, line in enumerate(_lines(path), start=1):
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise DataError(f"{path} row {line_number}: expected '<file> <0|1|2>'")
        partition[parts[0]] = int(parts[1])
    return partition


def _attribute_index(names: list[str], wanted: str, key: str) -> int:
    if wanted not in names:
        close = difflib.get_close_matches(wanted, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{key}: CelebA has no attribute '{wanted}'{hint}")
    return names.index(wanted)


def _overlaps(first: str, second: str) -> bool:
    return first == second or ALL_SPLITS in (first, second)


def chosen_splits(config: "Config") -> tuple[str, str | None, str]:
    """(train, val, test) partition names; val is None without a validation split.

    By default validation is the official ``valid`` partition, unless data.train or data.test already
    reads it (``valid`` or ``all``): images seen in training, or the test images, would make per-epoch
    metrics and model selection meaningless. data.val_size=0 turns validation off."""
    data = config.data
    train, test = data.train or DEFAULT_SPLITS[0], data.test or DEFAULT_SPLITS[1]
    if data.val_size == 0:
        return train, None, test
    if data.val:
        return train, data.val, test
    free = not any(_overlaps(DEFAULT_VAL_SPLIT, used) for used in (train, test))
    return train, DEFAULT_VAL_SPLIT if free else None, test


def load_celeba(config: Config, with_train: bool = True) -> BiasedDataset:
    data = config.data
    folder = resolve_data_root(config) / BASE_FOLDER
    names, files, attributes, rows = read_attributes(folder)
    target = _attribute_index(names, data.target_attr, "data.target_attr")
    bias = _attribute_index(names, data.bias_attr, "data.bias_attr")
    partition = read_partition(folder)
    source = str(folder / ATTR_FILE)

    def records(split: str, hint: str = "") -> ImageRecords:
        keep = [i for i, name in enumerate(files) if split == ALL_SPLITS or partition.get(name) == SPLIT_CODES[split]]
        if not keep:
            raise DataError(f"CelebA split '{split}' is empty in {folder / PARTITION_FILE}{hint}")
        index = torch.tensor(keep, dtype=torch.long)
        return ImageRecords(source, [folder / IMAGE_FOLDER / files[i] for i in keep], [rows[i] for i in keep],
                            attributes[index, target], attributes[index, bias])

    train_split, val_split, test_split = chosen_splits(config)
    train, test = records(train_split), records(test_split)
    val = (records(val_split, " (data.val_size=0 trains without a validation split)")
           if val_split is not None and wants_validation(config, with_train) else None)
    classes = [f"not_{data.target_attr}", data.target_attr]
    bias_classes = [f"not_{data.bias_attr}", data.bias_attr]
    used = "/".join(split for split in (train_split, val_split, test_split) if split is not None)
    return build_image_dataset(config, train, test, classes, bias_classes,
                               f"CelebA {data.target_attr} vs {data.bias_attr} ({used})", with_train, val=val)


@dataclass
class CelebaOptions(ImageOptions):
    """The ``data.*`` keys of CelebA (besides the image keys it shares with other photo sets)."""

    target_attr: str = option("Blond_Hair", "celeba: the attribute to classify")
    bias_attr: str = option("Male", "celeba: the attribute that is the bias")


def check_config(config: "Config") -> list[str]:
    data = config.data
    problems = [f"data.{key}: celeba splits are {', '.join(SPLITS)}, got {getattr(data, key)!r}"
                for key in ("train", "val", "test") if getattr(data, key) not in (None, *SPLITS)]
    if problems or not data.val:
        return problems
    train, val, test = chosen_splits(config)
    return [f"data.val: celeba split '{val}' overlaps data.{key} ('{used}'); validation must be held out of both"
            for key, used in (("train", train), ("test", test)) if val is not None and _overlaps(val, used)]


DATASET = DatasetSpec(
    summary="celeba (torchvision's CelebA folder)", options=CelebaOptions, load=load_celeba, check=check_config)
