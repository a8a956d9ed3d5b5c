"""Manifest CSVs for the paper's IMDB-face extreme-bias experiment, on UTKFace's real photographs.

Classify gender; age is the bias, in the age groups of the imdb-face-* presets: young = 0-29,
old = 40+ (ages 30-39 are not used). UTKFace (Zhang, Song and Qi, CVPR 2017; non-commercial research
use only) carries its labels in each file name, AGE_GENDER_RACE_DATETIME.jpg.chip.jpg (gender 0 male,
1 female; race 0 white, 1 black, 2 asian, 3 indian, 4 other):

    python -m lnl_cli.tools.utkface --images ../shared/data/utkface/crop_part1 --out ~/lnl-data/utkface

1. balanced_test.csv is held out first: --balanced-per-cell images of each (gender, age group) cell,
   drawn at random with --seed.
2. val_balanced.csv is held out next: --val-balanced-per-cell images of each cell (default 100). It
   is a little extra labelled data spent on choosing, never on training: for a model trained on EB1,
   its female/old and male/young images are bias-conflicting, the counter-examples that the validation
   split of an extreme-bias split lacks, so train.select (val_worst_group_accuracy) can rank how much
   bias a model unlearns. It is disjoint from every training and test split.
3. Of the rest, EB1 = young women + old men and EB2 = old women + young men (eb1.csv, eb2.csv). A
   model trained on one is tested on the other (its bias-conflicting images) and on balanced_test.csv.
4. --val-fraction of each cell of EB1 and EB2 is held out for validation (eb1_val.csv, eb2_val.csv);
   the rest is eb1_train.csv and eb2_train.csv. eb1.csv = eb1_train.csv + eb1_val.csv (likewise eb2).
5. --bias-rate R (default 1.0, the extreme bias above) below 1 makes each training split only R
   bias-aligned: for each gender with a aligned training images, round(a (1 - R) / R) bias-conflicting
   images are added, drawn from the other split's training images of that gender (EB1's young men
   come from EB2's), after every other draw. balanced_test, val_balanced and the *_val splits are then
   the same as at R = 1, so models trained at several rates are chosen and tested on the same images.
   eb1.csv and eb2.csv are not written at R < 1 (each would hold the other split's training images);
   test on balanced_test.csv.

Columns: path, gender (female/male), age_group (young/old), age, age_bin, race. age_bin is the
fine-grained age of the public IMDB-face protocol (12 bins: 0-19, 20-24, ..., 65-69, 70+; 30-34 and
35-39 stay empty, those ages not being used): a bias target that still varies inside each EB group,
so a bias head has something to learn that the label does not explain (data.columns.bias=age_bin).

Photos with the same bytes under several names are kept once (the first name in sorted order) and
counted: UTKFace's crop_part1 holds such copies, and one copy in a training split with another in a
test split would score the test on training images. Paths are relative to --out
when the images folder lies inside it (so data.root: the --out folder, and the two move together),
else absolute (any data.root reads them). counts.json beside the CSVs records the source folder, the
seed, the rules and the count of every split per cell; the same counts are printed.

Only the file names are read: a name that is not AGE_GENDER_RACE_DATETIME.jpg... (UTKFace has two) is
reported and skipped, and an unreadable photo is reported when training loads it (a one-line error
naming the CSV row), unless --check-images opens every photo now and skips the unreadable ones.
A folder that already holds a build's files is refused unless --force (then every file is rewritten
and a val_balanced.csv this build does not make is removed).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from lnl_cli.errors import ConfigError, DataError
from lnl_cli.fileio import atomic_write_text, expand_path, output_errors
from lnl_cli.tools import one_line_errors
from lnl_cli.tools.paper_manifests import OLD_MIN_AGE, YOUNG_MAX_AGE, age_group
from lnl_cli.version import __version__

DEFAULT_SEED = 0
DEFAULT_BALANCED_PER_CELL = 300   # balanced test images per (gender, age group) cell: 1,200 in all
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_VAL_BALANCED_PER_CELL = 100  # balanced validation images per cell: 200 conflicting ones for each EB
DEFAULT_BIAS_RATE = 1.0           # share of bias-aligned training images: 1.0 is the extreme-bias split
HASH_CHUNK = 1 << 20
MAX_NAMES_SHOWN = 5               # skipped names quoted in a report, so that it stays one short line

GENDERS = {0: "male", 1: "female"}  # UTKFace's coding (IMDB-WIKI's is the other way round)
RACES = {0: "white", 1: "black", 2: "asian", 3: "indian", 4: "other"}
CELLS = (("female", "young"), ("female", "old"), ("male", "young"), ("male", "old"))
EB1 = (("female", "young"), ("male", "old"))
EB2 = (("female", "old"), ("male", "young"))
HEADER = ["path", "gender", "age_group", "age", "age_bin", "race"]
SPLITS = ("balanced_test", "eb1_train", "eb1_val", "eb1", "eb2_train", "eb2_val", "eb2")
OPPOSITE_SPLITS = ("eb1", "eb2")  # not written below bias rate 1: they would overlap the other's training
VAL_BALANCED = "val_balanced"
COUNTS_FILE = "counts.json"
# Fine-grained age bins (lowest age of each) of the public IMDB-face protocol (e.g. jiazhi412's LNL
# re-implementation): 0-19, then five-year bins up to 65-69, then 70+.
AGE_BIN_STARTS = (0, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70)
# AGE_GENDER_RACE_DATETIME then .jpg (the aligned set) or .jpg.chip.jpg (the crops); nothing else.
NAME = re.compile(r"(\d{1,3})_(\d)_(\d)_(\d+)\.jpg(\.chip\.jpg)?", re.IGNORECASE)
JPEG_SUFFIXES = (".jpg", ".jpeg")

RULES = {
    "label": "gender from the file name's second field (UTKFace: 0 male, 1 female)",
    "bias": f"age_group: young = ages 0-{YOUNG_MAX_AGE}, old = {OLD_MIN_AGE}+; "
            f"ages {YOUNG_MAX_AGE + 1}-{OLD_MIN_AGE - 1} are not used",
    "balanced_test": "held out first: balanced_per_cell images of each (gender, age_group) cell, drawn with "
                     "random.Random(seed) from each cell's names in sorted order, cells in the order "
                     "female/young, female/old, male/young, male/old",
    "eb1": "the rest of female/young and male/old (eb1_train + eb1_val)",
    "eb2": "the rest of female/old and male/young (eb2_train + eb2_val)",
    "val": "of each cell of eb1 and eb2, floor(val_fraction x cell + 0.5) images (at least 1, leaving at least "
           "1 for training) drawn with the same generator go to *_val, the others to *_train",
    "val_balanced": "held out second: val_balanced_per_cell images of each cell, drawn with the same generator "
                    "after balanced_test (none, and no file, when 0); for choosing settings, never for training",
    "bias_rate": "below 1: per gender, round(aligned x (1 - rate) / rate) conflicting images added to each *_train "
                 "from the other EB's *_train (same gender), drawn with the same generator after every other "
                 "draw, cells in CELLS order; eb1.csv and eb2.csv are then not written",
    "age_bin": "12 bins of the age: 0-19, 20-24, ..., 65-69, 70+",
    "duplicates": "photos whose bytes equal an earlier name's (sorted order) are skipped",
    "paths": "relative to this folder when the images folder lies inside it, else absolute",
}


def age_bin(age: int) -> str:
    """The bin of AGE_BIN_STARTS holding `age`, named like 20-24 (the last, 70+)."""
    index = max(i for i, start in enumerate(AGE_BIN_STARTS) if age >= start)
    if index == len(AGE_BIN_STARTS) - 1:
        return f"{AGE_BIN_STARTS[index]}+"
    return f"{AGE_BIN_STARTS[index]}-{AGE_BIN_STARTS[index + 1] - 1}"


AGE_BINS = tuple(age_bin(start) for start in AGE_BIN_STARTS)
# The age group of every bin (None for 30-34 and 35-39): no bin straddles 29/30 or 39/40, so its first age
# decides it.
AGE_BIN_GROUPS = {age_bin(start): age_group(start) for start in AGE_BIN_STARTS}


@dataclass(frozen=True)
class Photo:
    name: str
    age: int
    gender: str
    race: str

    @property
    def age_group(self) -> str | None:
        return age_group(self.age)

    @property
    def cell(self) -> tuple[str, str | None]:
        return self.gender, self.age_group

    @property
    def age_bin(self) -> str:
        return age_bin(self.age)


def parse_name(name: str) -> Photo | None:
    """The labels in a UTKFace file name; None when it is not AGE_GENDER_RACE_DATETIME.jpg[.chip.jpg]
    with a known gender (0, 1) and race (0-4)."""
    match = NAME.fullmatch(name)
    if match is None:
        return None
    age, gender, race = (int(match.group(i)) for i in (1, 2, 3))
    if gender not in GENDERS or race not in RACES:
        return None
    return Photo(name, age, GENDERS[gender], RACES[race])


def cell_name(cell: tuple[str, str]) -> str:
    return "/".join(cell)


def _quoted(names: list[str]) -> str:
    shown = ", ".join(name if name.isprintable() else repr(name) for name in names[:MAX_NAMES_SHOWN])
    return shown + (f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else "")


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@dataclass
class Listing:
    """What the images folder holds, by name."""

    photos: list[Photo]
    malformed: list[str]      # JPEG names that are not AGE_GENDER_RACE_DATETIME.jpg...
    other_files: list[str]    # entries that are no JPEG by name (ignored)
    middle_aged: dict[str, int]  # ages 30-39 per gender: not used, by design


def list_folder(images: Path) -> Listing:
    if not images.exists():
        raise DataError(f"images folder not found: {images}")
    if not images.is_dir():
        raise DataError(f"not a folder: {images} (--images is the folder of UTKFace photos)")
    try:
        names = sorted(entry.name for entry in os.scandir(images) if not entry.is_dir())
    except OSError as exc:
        raise DataError(f"cannot list {images}: {exc.strerror or exc}") from None
    jpegs = [name for name in names if name.lower().endswith(JPEG_SUFFIXES)]
    if not jpegs:
        raise DataError(f"no JPEG files in {images}" + (f" ({len(names)} other files)" if names else " (empty)"))
    listing = Listing([], [], [name for name in names if not name.lower().endswith(JPEG_SUFFIXES)],
                      {gender: 0 for gender in GENDERS.values()})
    for name in jpegs:
        photo = parse_name(name)
        if photo is None:
            listing.malformed.append(name)
        elif photo.age_group is None:
            listing.middle_aged[photo.gender] += 1
        else:
            listing.photos.append(photo)
    if not listing.photos and not any(listing.middle_aged.values()):
        raise DataError(f"none of the {len(jpegs)} JPEG names in {images} is UTKFace's "
                        f"AGE_GENDER_RACE_DATETIME.jpg.chip.jpg (e.g. {_quoted(listing.malformed)})")
    return listing


def unreadable_photos(images: Path, photos: list[Photo]) -> list[str]:
    """Names of the photos Pillow cannot decode (opened and fully loaded, one at a time)."""
    from PIL import Image

    bad = []
    for photo in photos:
        try:
            with Image.open(images / photo.name) as image:
                image.load()
        except Exception:  # any decoder failure means the file is unusable
            bad.append(photo.name)
    return bad


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def drop_duplicates(images: Path, photos: list[Photo]) -> tuple[list[Photo], list[str]]:
    """The photos with the first name (sorted) of each distinct content, and the names skipped as copies.
    A photo that cannot be read is kept: reading it is --check-images' job, or training's."""
    seen: set[str] = set()
    kept, copies = [], []
    for photo in sorted(photos, key=lambda p: p.name):
        try:
            digest = file_digest(images / photo.name)
        except OSError:
            kept.append(photo)
            continue
        if digest in seen:
            copies.append(photo.name)
        else:
            seen.add(digest)
            kept.append(photo)
    return kept, copies


def val_count(size: int, fraction: float) -> int:
    """Validation images of a cell of `size`: the nearest to fraction x size, at least 1 when the cell has
    2 or more images, and never the whole cell."""
    return min(max(1, math.floor(fraction * size + 0.5)), size - 1) if size else 0


def conflicting_count(aligned: int, bias_rate: float) -> int:
    """Conflicting images to add to `aligned` ones so that aligned / (aligned + added) is nearest `bias_rate`."""
    return math.floor(aligned * (1 - bias_rate) / bias_rate + 0.5) if bias_rate < 1 else 0


def add_conflicting(splits: dict[str, list[Photo]], rng: random.Random, bias_rate: float) -> None:
    """Make each *_train bias_rate aligned with conflicting images from the other EB's *_train (same
    gender), drawn after every other choice so that the held-out splits do not depend on the rate."""
    aligned = {eb: sorted(splits[f"{eb}_train"], key=lambda p: p.name) for eb in ("eb1", "eb2")}
    for eb, other, cells in (("eb1", "eb2", EB1), ("eb2", "eb1", EB2)):
        for cell in cells:
            count = conflicting_count(sum(p.cell == cell for p in aligned[eb]), bias_rate)
            pool = [p for p in aligned[other] if p.gender == cell[0]]
            if count > len(pool):
                raise DataError(f"--bias-rate {bias_rate} needs {count} conflicting {cell[0]} images for "
                                f"{eb}_train, but {other}_train has {len(pool)}; raise --bias-rate")
            splits[f"{eb}_train"] += rng.sample(pool, count)


def assign(photos: list[Photo], per_cell: int, val_fraction: float, seed: int,
           val_per_cell: int = 0, bias_rate: float = DEFAULT_BIAS_RATE) -> dict[str, list[Photo]]:
    """Every split's photos. Deterministic for a seed: cells are visited in CELLS order, each cell's names
    sorted, one random.Random(seed) draws every choice (balanced_test first, then val_balanced, the
    validation splits, and last the conflicting images of a bias rate below 1)."""
    by_cell = {cell: sorted((p for p in photos if p.cell == cell), key=lambda p: p.name) for cell in CELLS}
    available = ", ".join(f"{cell_name(c)} {len(by_cell[c])}" for c in CELLS)
    for cell in CELLS:
        if len(by_cell[cell]) < per_cell + val_per_cell:
            raise DataError(f"cell {cell_name(cell)} has {len(by_cell[cell])} images, fewer than "
                            f"--balanced-per-cell {per_cell}"
                            + (f" + --val-balanced-per-cell {val_per_cell}" if val_per_cell else "")
                            + f" (images per cell: {available})")
    rng = random.Random(seed)
    splits: dict[str, list[Photo]] = {name: [] for name in (*SPLITS, VAL_BALANCED)}
    rest = dict(by_cell)
    for name, count in (("balanced_test", per_cell), (VAL_BALANCED, val_per_cell)):
        if not count:
            continue
        for cell in CELLS:
            chosen = set(rng.sample(range(len(rest[cell])), count))
            splits[name] += [p for i, p in enumerate(rest[cell]) if i in chosen]
            rest[cell] = [p for i, p in enumerate(rest[cell]) if i not in chosen]
    for eb, cells in (("eb1", EB1), ("eb2", EB2)):
        for cell in cells:
            remaining = rest[cell]
            val = set(rng.sample(range(len(remaining)), val_count(len(remaining), val_fraction)))
            splits[f"{eb}_val"] += [p for i, p in enumerate(remaining) if i in val]
            splits[f"{eb}_train"] += [p for i, p in enumerate(remaining) if i not in val]
            splits[eb] += remaining
    add_conflicting(splits, rng, bias_rate)
    for name in splits:
        splits[name].sort(key=lambda p: p.name)
    _check_classes(splits, rest, per_cell + val_per_cell)
    return splits


def _check_classes(splits: dict[str, list[Photo]], rest: dict, per_cell: int) -> None:
    """Every training and validation split must hold both genders (balanced_test holds every cell, and
    eb1 and eb2 hold their train and val): a split without one is no experiment."""
    for eb, cells in (("eb1", EB1), ("eb2", EB2)):
        for name in (f"{eb}_train", f"{eb}_val"):
            present = {p.gender for p in splits[name]}
            missing = [cell for cell in cells if cell[0] not in present]
            if not missing:
                continue
            cell = missing[0]
            gender = cell[0]
            left = len(rest[cell])
            raise DataError(f"{name} has no {gender} images: cell {cell_name(cell)} has {left} left after the "
                            f"{per_cell} of balanced_test and val_balanced"
                            + (" (training and validation need 2)" if left == 1 else "")
                            + "; lower --balanced-per-cell or --val-balanced-per-cell, or add images")


def relative_root(images: Path, out: Path) -> Path | None:
    """The images folder relative to `out` when it lies inside it, else None (paths are then absolute)."""
    try:
        return Path(os.path.abspath(images)).relative_to(os.path.abspath(out))
    except ValueError:
        return None


def csv_text(photos: list[Photo], folder: Path) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for photo in photos:
        writer.writerow([(folder / photo.name).as_posix(), photo.gender, photo.age_group, photo.age, photo.age_bin,
                         photo.race])
    return buffer.getvalue()


def counts_per_cell(photos: list[Photo]) -> dict[str, int]:
    counts = {cell_name(cell): sum(p.cell == cell for p in photos) for cell in CELLS}
    return {**counts, "total": len(photos)}


def table(rows: dict[str, dict[str, int]]) -> str:
    columns = [cell_name(cell) for cell in CELLS] + ["total"]
    width = max(len(name) for name in rows) + 2
    lines = ["split".ljust(width) + "".join(c.rjust(14) for c in columns)]
    lines += [name.ljust(width) + "".join(f"{counts[c]:,}".rjust(14) for c in columns)
              for name, counts in rows.items()]
    return "\n".join(lines)


def output_names() -> tuple[str, ...]:
    """Every file a build may write into --out."""
    return (*(f"{name}.csv" for name in (*SPLITS, VAL_BALANCED)), COUNTS_FILE)


def refuse_earlier_build(out: Path) -> None:
    """A second build would silently replace the CSVs that earlier runs were trained and tested on."""
    present = [name for name in output_names() if os.path.lexists(out / name)]
    if present:
        raise ConfigError(f"--out {out} already holds {', '.join(present)} (an earlier build); pass --force to "
                          "overwrite them, or choose another --out")


def written_splits(val_balanced_per_cell: int, bias_rate: float) -> tuple[str, ...]:
    """The splits a build writes: no val_balanced without its images, no opposite split below rate 1."""
    return tuple(name for name in (*SPLITS, VAL_BALANCED)
                 if (name != VAL_BALANCED or val_balanced_per_cell)
                 and (name not in OPPOSITE_SPLITS or bias_rate >= 1))


def build(images: Path, out: Path, seed: int = DEFAULT_SEED, balanced_per_cell: int = DEFAULT_BALANCED_PER_CELL,
          val_fraction: float = DEFAULT_VAL_FRACTION, check_images: bool = False,
          val_balanced_per_cell: int = DEFAULT_VAL_BALANCED_PER_CELL, force: bool = False,
          bias_rate: float = DEFAULT_BIAS_RATE) -> dict:
    """Write the CSVs and counts.json into `out` (counts.json last: a folder without it is an unfinished
    build); return what counts.json holds. Nothing is written when the folder cannot make every split."""
    if not 0 < bias_rate <= 1:
        raise ConfigError(f"--bias-rate must be above 0 and at most 1, got {bias_rate}")
    images = expand_path(images)
    out = expand_path(out)
    if not force:
        refuse_earlier_build(out)
    listing = list_folder(images)
    if listing.malformed:
        warn(f"{plural(len(listing.malformed), 'malformed file name')} skipped (not UTKFace's "
             f"AGE_GENDER_RACE_DATETIME.jpg.chip.jpg with gender 0/1 and race 0-4): {_quoted(listing.malformed)}")
    unreadable: list[str] | None = None
    photos = listing.photos
    if check_images:
        unreadable = unreadable_photos(images, photos)
        if unreadable:
            warn(f"{plural(len(unreadable), 'unreadable photo')} skipped (Pillow cannot decode them): "
                 f"{_quoted(unreadable)}")
            skipped = set(unreadable)
            photos = [p for p in photos if p.name not in skipped]
    photos, copies = drop_duplicates(images, photos)
    if copies:
        warn(f"{plural(len(copies), 'duplicate photo')} skipped (the same bytes as an earlier name): {_quoted(copies)}")
    splits = assign(photos, balanced_per_cell, val_fraction, seed, val_balanced_per_cell, bias_rate)
    written = written_splits(val_balanced_per_cell, bias_rate)

    inside = relative_root(images, out)
    folder = inside if inside is not None else Path(os.path.abspath(images))
    counts = {"available": counts_per_cell(photos), **{name: counts_per_cell(splits[name]) for name in written}}
    record = {
        "tool": "lnl_cli.tools.utkface", "lnl_version": __version__,
        "source": os.path.abspath(images), "paths": "relative" if inside is not None else "absolute",
        "seed": seed, "balanced_per_cell": balanced_per_cell, "val_balanced_per_cell": val_balanced_per_cell,
        "val_fraction": val_fraction, "bias_rate": bias_rate, "age_bins": list(AGE_BINS),
        "check_images": check_images, "rules": RULES,
        "files": {
            "jpeg_names": len(listing.photos) + len(listing.malformed) + sum(listing.middle_aged.values()),
            "malformed_names": len(listing.malformed), "malformed_examples": listing.malformed[:MAX_NAMES_SHOWN],
            "other_files": len(listing.other_files),
            "aged_30_39_not_used": dict(listing.middle_aged),
            "unreadable": None if unreadable is None else len(unreadable),
            "unreadable_examples": None if unreadable is None else unreadable[:MAX_NAMES_SHOWN],
            "duplicates": len(copies), "duplicate_examples": copies[:MAX_NAMES_SHOWN],
        },
        "splits": counts,
    }
    with output_errors(out):
        out.mkdir(parents=True, exist_ok=True)
    for name in (*SPLITS, VAL_BALANCED):  # --force over a build that wrote more: no stale split
        stale = out / f"{name}.csv"
        if name not in written and os.path.lexists(stale):
            with output_errors(stale):
                stale.unlink()
    for name in written:
        target = out / f"{name}.csv"
        with output_errors(target):
            atomic_write_text(target, csv_text(splits[name], folder))
    with output_errors(out / COUNTS_FILE):
        atomic_write_text(out / COUNTS_FILE, json.dumps(record, indent=2) + "\n")

    files = record["files"]
    middle = files["aged_30_39_not_used"]
    print(f"source: {record['source']}: {files['jpeg_names']:,} JPEG names, {files['malformed_names']} malformed "
          f"(skipped), {middle['female'] + middle['male']:,} aged 30-39 (not used by design: "
          f"{middle['female']:,} female, {middle['male']:,} male)"
          + ("" if unreadable is None else f", {len(unreadable)} unreadable (skipped)")
          + (f", {len(copies)} duplicates (skipped)" if copies else ""))
    print(f"seed {seed}, --balanced-per-cell {balanced_per_cell}, --val-balanced-per-cell {val_balanced_per_cell}, "
          f"--val-fraction {val_fraction}, --bias-rate {bias_rate}")
    print(table(counts))
    print(f"wrote {', '.join(f'{name}.csv' for name in written)} and {COUNTS_FILE} to {out} "
          f"(image paths {record['paths']})")
    return record


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are the project's one-line ConfigError (exit 2), not usage text."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see --help)")


def _share(upper_inclusive: bool):
    """An argparse type: a number above 0 and below 1 (up to 1 itself with `upper_inclusive`)."""
    allowed = "above 0 and at most 1" if upper_inclusive else "between 0 and 1 (exclusive)"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (0 < value < 1 or (upper_inclusive and value == 1)):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value
    return parse


_fraction, _rate = _share(upper_inclusive=False), _share(upper_inclusive=True)


def _int_at_least(minimum: int):
    """An argparse type: a whole number of at least `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value
    return parse


_positive, _count = _int_at_least(1), _int_at_least(0)


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    parser = _Parser(prog="python -m lnl_cli.tools.utkface", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="folder of UTKFace photos (e.g. crop_part1)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSVs and counts.json")
    parser.add_argument("--seed", type=_count, default=DEFAULT_SEED,
                        help=f"seed of every random choice (default {DEFAULT_SEED})")
    parser.add_argument("--balanced-per-cell", type=_positive, default=DEFAULT_BALANCED_PER_CELL,
                        help=f"balanced test images per (gender, age group) cell (default {DEFAULT_BALANCED_PER_CELL})")
    parser.add_argument("--val-balanced-per-cell", type=_count, default=DEFAULT_VAL_BALANCED_PER_CELL,
                        help="balanced validation images per cell (val_balanced.csv): bias-conflicting "
                             "counter-examples to choose settings on, never trained on; 0: none "
                             f"(default {DEFAULT_VAL_BALANCED_PER_CELL})")
    parser.add_argument("--val-fraction", type=_fraction, default=DEFAULT_VAL_FRACTION,
                        help=f"share of each training cell held out for validation (default {DEFAULT_VAL_FRACTION})")
    parser.add_argument("--bias-rate", type=_rate, default=DEFAULT_BIAS_RATE,
                        help="share of bias-aligned images in each training split; below 1, conflicting images "
                             "from the other split are added and eb1.csv/eb2.csv are not written (default "
                             f"{DEFAULT_BIAS_RATE}: extreme bias)")
    parser.add_argument("--check-images", action="store_true",
                        help="open every photo now and skip those that cannot be decoded (default: only the names "
                             "are read; an unreadable photo is then an error naming its CSV row when training "
                             "loads it)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite the files of an earlier build in --out (default: refuse)")
    args = parser.parse_args(argv)
    build(args.images, args.out, args.seed, args.balanced_per_cell, args.val_fraction, args.check_images,
          args.val_balanced_per_cell, args.force, args.bias_rate)


if __name__ == "__main__":
    main()
