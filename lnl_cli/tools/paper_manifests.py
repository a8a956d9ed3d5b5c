"""Manifest CSVs for the paper's real-image experiments, from the official lists and your images.

Dogs and Cats (colour bias; images: Kaggle "Dogs vs. Cats" train folder; lists: list_bright.txt and
list_dark.txt from github.com/feidfoe/learning-not-to-learn, dataset/dogs_and_cats):

    python -m lnl_cli.tools.paper_manifests dogs-and-cats --images ~/kaggle/train \\
        --lists path/to/dataset/dogs_and_cats --out ~/lnl-data/dogs-and-cats

writes tb1.csv (dark cats + bright dogs) and tb2.csv (bright cats + dark dogs); columns path, label
(cat/dog), brightness (dark/bright). Images in neither list are not used, as in the paper.

IMDB faces (age/gender bias; images: IMDB-WIKI's imdb_crop folder; lists: imdb_age_gender.npy and
imdb_split.npy linked from the official repository's dataset/IMDB):

    python -m lnl_cli.tools.paper_manifests imdb --images ~/imdb_crop --age-gender imdb_age_gender.npy \\
        --split imdb_split.npy --out ~/lnl-data/imdb-face

writes eb1.csv (training list: women aged 0-29 + men aged 40+), eb2.csv (women 40+ + men 0-29) and
test.csv (test list, both age groups and both genders); columns path, gender (female/male),
age_group (young: 0-29 / old: 40+). Ages 30-39 are left out, as in the paper's extreme-bias splits.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from lnl_cli.errors import DataError
from lnl_cli.tools import one_line_errors

YOUNG_MAX_AGE = 29
OLD_MIN_AGE = 40
GENDERS = {0: "female", 1: "male"}  # IMDB-WIKI's coding


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"list not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    print(f"{path}: {len(rows)} images")


def dogs_and_cats(images: Path, lists: Path, out: Path) -> None:
    bright, dark = _read_list(lists / "list_bright.txt"), _read_list(lists / "list_dark.txt")

    def rows(cats: list[str], cat_tone: str, dogs: list[str], dog_tone: str) -> list[list[str]]:
        picked = [[str(images / f), "cat", cat_tone] for f in cats if f.startswith("cat")]
        return picked + [[str(images / f), "dog", dog_tone] for f in dogs if f.startswith("dog")]

    out.mkdir(parents=True, exist_ok=True)
    header = ["path", "label", "brightness"]
    _write(out / "tb1.csv", header, rows(dark, "dark", bright, "bright"))
    _write(out / "tb2.csv", header, rows(bright, "bright", dark, "dark"))


def age_group(age: int) -> str | None:
    """young (0-29), old (40+), or None for the ages 30-39 the experiment leaves out."""
    if age <= YOUNG_MAX_AGE:
        return "young"
    return "old" if age >= OLD_MIN_AGE else None


def _load_dict(path: Path) -> dict:
    """One of the official .npy files: a pickled dict (they are the user's own download, as documented)."""
    import pickle

    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=True, encoding="latin1").item()
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise DataError(f"{path} does not hold a dict")
    return loaded


def imdb(images: Path, age_gender: Path, split: Path, out: Path) -> None:
    labels, lists = _load_dict(age_gender), _load_dict(split)
    if not {"train_list", "test_list"} <= set(lists):
        raise DataError(f"{split} has no train_list/test_list (keys: {', '.join(map(str, lists))})")

    def rows(names, keep) -> list[list[str]]:
        result = []
        for name in names:
            info = labels.get(name.encode("utf-8") if isinstance(name, str) else name)
            if info is None:
                continue
            try:
                gender, group = GENDERS.get(int(info["gender"])), age_group(int(info["age"]))
            except (TypeError, ValueError):  # unknown gender or age (NaN) in IMDB-WIKI
                continue
            if gender and group and keep(gender, group):
                text = name.decode("utf-8") if isinstance(name, bytes) else name
                result.append([str(images / text), gender, group])
        return result

    out.mkdir(parents=True, exist_ok=True)
    header = ["path", "gender", "age_group"]
    eb1 = {("female", "young"), ("male", "old")}
    _write(out / "eb1.csv", header, rows(lists["train_list"], lambda g, a: (g, a) in eb1))
    _write(out / "eb2.csv", header, rows(lists["train_list"], lambda g, a: (g, a) not in eb1))
    _write(out / "test.csv", header, rows(lists["test_list"], lambda g, a: True))


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="dataset", required=True)
    cats = sub.add_parser("dogs-and-cats")
    cats.add_argument("--images", type=Path, required=True, help="Kaggle Dogs vs. Cats train folder")
    cats.add_argument("--lists", type=Path, required=True, help="folder with list_bright.txt and list_dark.txt")
    cats.add_argument("--out", type=Path, required=True)
    faces = sub.add_parser("imdb")
    faces.add_argument("--images", type=Path, required=True, help="IMDB-WIKI imdb_crop folder")
    faces.add_argument("--age-gender", type=Path, required=True, help="imdb_age_gender.npy")
    faces.add_argument("--split", type=Path, required=True, help="imdb_split.npy")
    faces.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.dataset == "dogs-and-cats":
        dogs_and_cats(args.images, args.lists, args.out)
    else:
        imdb(args.images, args.age_gender, args.split, args.out)


if __name__ == "__main__":
    main()
