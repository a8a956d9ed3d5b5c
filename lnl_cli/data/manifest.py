"""Bring-your-own data: images listed in CSV files with a label and a bias column.

    data:
      type: manifest
      root: path/to/dataset      # relative to the preset file's folder unless absolute
      train: train.csv           # relative to root
      test: test.csv
      columns: {path: path, label: label, bias: bias}
      image_size: 64
      val: val.csv               # optional: a validation split, held out of training

or one CSV whose split column says where each row belongs (Waterbirds' metadata.csv):

    data:
      type: manifest
      csv: metadata.csv
      columns: {path: img_filename, label: y, bias: place, split: split}
      split_values: {train: [0], val: [1], test: [2]}   # optional: the defaults read names and 0/1/2

Every problem (missing file or column, empty cell, missing image, a test label never seen in
training, a split value that is no split, a split without rows) is a one-line DataError naming the file
and row.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import torch

from lnl_cli.data.base import BiasedDataset, DatasetSpec, resolve_data_root
from lnl_cli.data.images import ImageOptions, ImageRecords, build_image_dataset, check_first_image, wants_validation
from lnl_cli.errors import DataError, shown
from lnl_cli.fileio import expand_path
from lnl_cli.schema import option

if TYPE_CHECKING:
    from lnl_cli.config import Config

HEADER_ROW = 1  # CSV line numbers in messages count the header as line 1
SPLIT_NAMES = ("train", "val", "test")  # the splits a split column assigns rows to (data.split_values)
MAX_BAD_VALUES_SHOWN = 5  # distinct unknown split values quoted in an error, so that it stays one short line


@dataclass
class ManifestRows:
    """The raw strings of one CSV: image paths, labels and bias values, with their line numbers."""

    source: Path
    paths: list[Path]
    rows: list[int]
    labels: list[str]
    bias: list[str]
    splits: list[str] = field(default_factory=list)  # the split column's cells; empty without one

    def take(self, positions: list[int]) -> "ManifestRows":
        return ManifestRows(self.source, [self.paths[i] for i in positions], [self.rows[i] for i in positions],
                            [self.labels[i] for i in positions], [self.bias[i] for i in positions],
                            [self.splits[i] for i in positions] if self.splits else [])


def read_manifest(csv_path: Path, root: Path, path_col: str, label_col: str, bias_col: str,
                  split_col: str | None = None) -> ManifestRows:
    if csv_path.is_dir():
        raise DataError(f"{csv_path} is a folder, not a CSV manifest (for photos in <class>/ folders use "
                        f"data.type=folder)")
    if not csv_path.is_file():
        raise DataError(f"manifest not found: {csv_path}")
    wanted = (path_col, label_col, bias_col, *([split_col] if split_col else []))
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in wanted if c not in header]
            if missing:
                raise DataError(f"{csv_path}: missing column {', '.join(repr(c) for c in missing)} "
                                f"(columns: {', '.join(header) or 'none'}; set data.columns)")
            result = ManifestRows(csv_path, [], [], [], [])
            for line, record in enumerate(reader, start=HEADER_ROW + 1):
                values = [(record.get(c) or "").strip() for c in wanted]
                for column, value in zip(wanted, values):
                    if not value:
                        raise DataError(f"{csv_path} row {line}: empty '{column}'")
                image = expand_path(values[0])
                result.paths.append(image if image.is_absolute() else root / image)
                result.rows.append(line)
                result.labels.append(values[1])
                result.bias.append(values[2])
                if split_col:
                    result.splits.append(values[3])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read manifest {csv_path}: {exc}") from None
    if not result.paths:
        raise DataError(f"{csv_path} lists no images")
    return result


def split_lookup(values: "SplitValues") -> dict[str, str]:
    """Cell text -> split name. Values compare as text, as the CSV holds them: YAML's 0 matches the cell 0."""
    return {str(value): name for name in SPLIT_NAMES for value in getattr(values, name)}


def _listed(values: "SplitValues", name: str) -> str:
    return ", ".join(shown(str(value)) for value in getattr(values, name))


def split_by_column(rows: ManifestRows, column: str, values: "SplitValues", need_val: bool) -> dict[str, ManifestRows]:
    """The rows of one CSV divided into train, val and test by their split column.

    Every cell must name a split: a typo or an unmapped coding would otherwise drop rows (or a whole split)
    without a word. Train and test must have rows; val too when it is wanted (`need_val`), else its rows
    are left out."""
    lookup = split_lookup(values)
    positions: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    unknown: dict[str, int] = {}  # each bad value -> the first row holding it
    bad_rows = 0
    for position, (cell, line) in enumerate(zip(rows.splits, rows.rows)):
        name = lookup.get(cell)
        if name is None:
            bad_rows += 1
            unknown.setdefault(cell, line)
        else:
            positions[name].append(position)
    if unknown:
        accepted = "; ".join(f"{name}: {_listed(values, name)}" for name in SPLIT_NAMES)
        first = list(unknown.items())[:MAX_BAD_VALUES_SHOWN]
        quoted = ", ".join(f"{shown(value)} (row {line})" for value, line in first)
        more = f" and {len(unknown) - MAX_BAD_VALUES_SHOWN} more" if len(unknown) > MAX_BAD_VALUES_SHOWN else ""
        raise DataError(f"{rows.source}: {bad_rows} of {len(rows.rows)} rows have a '{column}' value that is no "
                        f"split: {quoted}{more} (data.split_values: {accepted})")
    for name in SPLIT_NAMES:
        if not positions[name] and (name != "val" or need_val):
            hint = "; data.val_size=0 trains without a validation split" if name == "val" else ""
            raise DataError(f"{rows.source}: the {name} split has no rows (no '{column}' value is one of "
                            f"{_listed(values, name)}; see data.split_values{hint})")
    return {name: rows.take(positions[name]) for name in SPLIT_NAMES}


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


def records_of(rows: ManifestRows, classes: list[str], bias_classes: list[str], origin: dict[str, str]) -> ImageRecords:
    return ImageRecords(str(rows.source), rows.paths, rows.rows,
                        _index(rows, rows.labels, classes, "label", origin["label"]),
                        _index(rows, rows.bias, bias_classes, "bias value", origin["bias"]))


def _csv_path(root: Path, name: str) -> Path:
    path = expand_path(name)
    return path if path.is_absolute() else root / path


def describe(config: "Config", root: Path) -> str:
    """The dataset's one-line description, from the config alone, so that training and the commands that
    read only the test set (and skip the validation split) describe it alike."""
    data = config.data
    if data.columns.split:
        return f"manifest {_csv_path(root, data.csv).name} (split column '{data.columns.split}') in {root}"
    names = [data.train, *([data.val] if data.val and data.val_size != 0 else []), data.test]
    return f"manifest {' / '.join(_csv_path(root, name).name for name in names)} in {root}"


def _read_splits(config: Config, want_val: bool) -> tuple[ManifestRows, ManifestRows, ManifestRows | None, str]:
    """The training, test and (when wanted and given) validation rows, and how messages name training."""
    data = config.data
    root = resolve_data_root(config)
    columns = (data.columns.path, data.columns.label, data.columns.bias)
    if data.columns.split:
        every = read_manifest(_csv_path(root, data.csv), root, *columns, split_col=data.columns.split)
        splits = split_by_column(every, data.columns.split, data.split_values, want_val)
        return splits["train"], splits["test"], splits["val"] if want_val else None, \
            f"the training rows of {every.source.name}"
    train = read_manifest(_csv_path(root, data.train), root, *columns)
    test = read_manifest(_csv_path(root, data.test), root, *columns)
    val = read_manifest(_csv_path(root, data.val), root, *columns) if data.val and want_val else None
    return train, test, val, f"the training manifest {train.source.name}"


def split_records(config: Config, train: ManifestRows, test: ManifestRows, val: ManifestRows | None,
                  training: str) -> tuple[ImageRecords, ImageRecords, ImageRecords | None, list[str], list[str]]:
    """Rows as records of class and bias indices: the classes and bias values in data.classes /
    data.bias_classes order, else in natural order of the training rows (`training` names them in messages).
    Shared by every source of image rows (manifests, folders)."""
    data = config.data
    classes = [str(v) for v in data.classes] or natural_order(train.labels)
    bias_classes = [str(v) for v in data.bias_classes] or natural_order(train.bias)
    origin = {"label": "data.classes" if data.classes else training,
              "bias": "data.bias_classes" if data.bias_classes else training}
    train_records, test_records = (records_of(rows, classes, bias_classes, origin) for rows in (train, test))
    val_records = None if val is None else records_of(val, classes, bias_classes, origin)
    return train_records, test_records, val_records, classes, bias_classes


def check_first_images(config: Config, records: tuple[ImageRecords | None, ...]) -> None:
    """Each split's first image decodes: what --dry-run reads of the images."""
    for split in records:
        if split is not None:
            check_first_image(split, config.data.image_size)


def load_manifest_dataset(config: Config, with_train: bool = True) -> BiasedDataset:
    train, test, val, classes, bias_classes = split_records(config, *_read_splits(config, wants_validation(config, with_train)))
    return build_image_dataset(config, train, test, classes, bias_classes,
                               describe(config, resolve_data_root(config)), with_train, val=val)


def preflight(config: Config) -> None:
    """Every CSV reads (columns, cells, labels known to training) and each split's first image decodes."""
    check_first_images(config, split_records(config, *_read_splits(config, wants_validation(config, True)))[:3])


@dataclass
class ColumnsConfig:
    path: str = option("path", "manifest column with the image path (relative to data.root)")
    label: str = option("label", "manifest column with the class label")
    bias: str = option("bias", "manifest column with the bias attribute")
    split: Union[str, None] = option(
        None, "manifest column naming each row's split (values: data.split_values); every split then comes "
              "from data.csv")


@dataclass
class SplitValues:
    """Which cells of the split column (data.columns.split) put a row in which split.

    The defaults read the names and the numeric coding shared by Waterbirds' metadata.csv and CelebA's
    list_eval_partition.txt (0 train, 1 validation, 2 test); any other coding is set here rather than
    guessed, and a cell that none of the lists holds is an error, never a dropped row."""

    train: list[Union[int, str]] = option(factory=lambda: ["train", 0],
                                          help="manifest: split-column values of training rows")
    val: list[Union[int, str]] = option(factory=lambda: ["val", "valid", "validation", 1],
                                        help="manifest: split-column values of validation rows")
    test: list[Union[int, str]] = option(factory=lambda: ["test", 2],
                                         help="manifest: split-column values of test rows")


@dataclass
class ManifestOptions(ImageOptions):
    """The ``data.*`` keys of manifest datasets (besides the image keys they share with other photo sets)."""

    columns: ColumnsConfig = option(factory=ColumnsConfig)
    csv: Union[str, None] = option(
        None, "manifest: one CSV listing every split (relative to data.root), with data.columns.split "
              "naming each row's; instead of data.train, data.val and data.test")
    split_values: SplitValues = option(factory=SplitValues)
    classes: list[Union[int, str]] = option(
        factory=list, help="manifest, folder: label values in class order; default: sorted from the training split")
    bias_classes: list[Union[int, str]] = option(
        factory=list, help="manifest, folder: bias values in order; default: sorted from the training split")


def _check_splits(data) -> list[str]:
    """The two ways to name the splits exclude each other: separate CSVs (data.train, data.test and
    optionally data.val) or one CSV with a split column (data.csv and data.columns.split)."""
    if not data.columns.split:
        problems = [f"data.{key}: a manifest dataset needs a CSV file name" for key in ("train", "test")
                    if not getattr(data, key)]
        if data.csv:
            problems.append("data.csv: a CSV of every split needs data.columns.split, the column naming each "
                            "row's split (or use data.train and data.test)")
        return problems
    problems = [] if data.csv else ["data.columns.split: needs data.csv, the one CSV that lists every split"]
    if data.val:
        problems.append("data.val and data.columns.split: choose one, a validation CSV or a split column")
    problems += [f"data.{key}: not used with data.columns.split (every split comes from data.csv)"
                 for key in ("train", "test") if getattr(data, key)]
    owner: dict[str, str] = {}
    for name in SPLIT_NAMES:
        values = [str(v) for v in getattr(data.split_values, name)]
        if not values:
            problems.append(f"data.split_values.{name}: needs at least one value")
        for value in dict.fromkeys(values):
            if value in owner:
                problems.append(f"data.split_values: {shown(value)} is listed for both {owner[value]} and {name}")
            owner.setdefault(value, name)
    return problems


def check_config(config: "Config") -> list[str]:
    data = config.data
    problems = _check_splits(data)
    for key in ("classes", "bias_classes"):
        values = [str(v) for v in getattr(data, key)]
        if len(set(values)) != len(values):
            problems.append(f"data.{key}: values must be unique, got {values}")
    return problems


DATASET = DatasetSpec(
    summary="manifest (your images listed in CSV files)", options=ManifestOptions, load=load_manifest_dataset,
    check=check_config, preflight=preflight)
