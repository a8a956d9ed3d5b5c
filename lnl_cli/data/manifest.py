"""Bring-your-own data: images listed in CSV files with a label and a bias column.

    data:
      type: manifest
      root: path/to/dataset      # relative to the preset file's folder unless absolute
      train: train.csv           # relative to root
      test: test.csv
      columns: {path: path, label: label, bias: bias}
      image_size: 64

Every problem (missing file or column, empty cell, missing image, a test label never seen in
training) is a one-line DataError naming the file and row.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import torch

from lnl_cli.data.base import BiasedDataset, DatasetSpec, resolve_data_root
from lnl_cli.data.images import ImageOptions, ImageRecords, build_image_dataset
from lnl_cli.errors import DataError
from lnl_cli.fileio import expand_path
from lnl_cli.schema import option

if TYPE_CHECKING:
    from lnl_cli.config import Config

HEADER_ROW = 1  # CSV line numbers in messages count the header as line 1


@dataclass
class ManifestRows:
    """The raw strings of one CSV: image paths, labels and bias values, with their line numbers."""

    source: Path
    paths: list[Path]
    rows: list[int]
    labels: list[str]
    bias: list[str]


def read_manifest(csv_path: Path, root: Path, path_col: str, label_col: str, bias_col: str) -> ManifestRows:
    if not csv_path.is_file():
        raise DataError(f"manifest not found: {csv_path}")
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in (path_col, label_col, bias_col) if c not in header]
            if missing:
                raise DataError(f"{csv_path}: missing column {', '.join(repr(c) for c in missing)} "
                                f"(columns: {', '.join(header) or 'none'}; set data.columns)")
            result = ManifestRows(csv_path, [], [], [], [])
            for line, record in enumerate(reader, start=HEADER_ROW + 1):
                values = [(record.get(c) or "").strip() for c in (path_col, label_col, bias_col)]
                for column, value in zip((path_col, label_col, bias_col), values):
                    if not value:
                        raise DataError(f"{csv_path} row {line}: empty '{column}'")
                image = expand_path(values[0])
                result.paths.append(image if image.is_absolute() else root / image)
                result.rows.append(line)
                result.labels.append(values[1])
                result.bias.append(values[2])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read manifest {csv_path}: {exc}") from None
    if not result.paths:
        raise DataError(f"{csv_path} lists no images")
    return result


def natural_order(values: list[str]) -> list[str]:
    """Distinct values sorted as numbers when they all are (so 10 comes after 9), else as text.

    Values equal as numbers but written differently (``2`` and ``02``) are distinct classes, ordered by
    their text: the order is total, so it never depends on the order of the rows or on hashing."""
    distinct = set(values)
    try:
        return sorted(distinct, key=lambda value: (int(value), value))
    except ValueError:
        return sorted(distinct)


def _index(rows: ManifestRows, values: list[str], vocabulary: list[str], what: str, origin: str) -> torch.Tensor:
    lookup = {value: i for i, value in enumerate(vocabulary)}
    indices = []
    for value, line in zip(values, rows.rows):
        if value not in lookup:
            raise DataError(f"{rows.source} row {line}: {what} '{value}' does not occur in {origin}")
        indices.append(lookup[value])
    return torch.tensor(indices, dtype=torch.long)


def _records(rows: ManifestRows, classes: list[str], bias_classes: list[str], origin: dict[str, str]) -> ImageRecords:
    return ImageRecords(str(rows.source), rows.paths, rows.rows,
                        _index(rows, rows.labels, classes, "label", origin["label"]),
                        _index(rows, rows.bias, bias_classes, "bias value", origin["bias"]))


def load_manifest_dataset(config: Config, with_train: bool = True) -> BiasedDataset:
    data = config.data
    root = resolve_data_root(config)
    columns = (data.columns.path, data.columns.label, data.columns.bias)
    train_csv, test_csv = (expand_path(name) for name in (data.train, data.test))
    train = read_manifest(train_csv if train_csv.is_absolute() else root / train_csv, root, *columns)
    test = read_manifest(test_csv if test_csv.is_absolute() else root / test_csv, root, *columns)
    classes = [str(v) for v in data.classes] or natural_order(train.labels)
    bias_classes = [str(v) for v in data.bias_classes] or natural_order(train.bias)
    origin = {"label": "data.classes" if data.classes else f"the training manifest {train.source.name}",
              "bias": "data.bias_classes" if data.bias_classes else f"the training manifest {train.source.name}"}
    return build_image_dataset(
        config, _records(train, classes, bias_classes, origin), _records(test, classes, bias_classes, origin),
        classes, bias_classes, f"manifest {train.source.name} / {test.source.name} in {root}", with_train)


@dataclass
class ColumnsConfig:
    path: str = option("path", "manifest column with the image path (relative to data.root)")
    label: str = option("label", "manifest column with the class label")
    bias: str = option("bias", "manifest column with the bias attribute")


@dataclass
class ManifestOptions(ImageOptions):
    """The ``data.*`` keys of manifest datasets (besides the image keys they share with other photo sets)."""

    columns: ColumnsConfig = option(factory=ColumnsConfig)
    classes: list[Union[int, str]] = option(
        factory=list, help="manifest: label values in class order; default: sorted from the training CSV")
    bias_classes: list[Union[int, str]] = option(
        factory=list, help="manifest: bias values in order; default: sorted from the training CSV")


def check_config(config: "Config") -> list[str]:
    data = config.data
    problems = [f"data.{key}: a manifest dataset needs a CSV file name" for key in ("train", "test")
                if not getattr(data, key)]
    for key in ("classes", "bias_classes"):
        values = [str(v) for v in getattr(data, key)]
        if len(set(values)) != len(values):
            problems.append(f"data.{key}: values must be unique, got {values}")
    return problems


DATASET = DatasetSpec(
    summary="manifest (your images listed in CSV files)", options=ManifestOptions, load=load_manifest_dataset,
    check=check_config)
