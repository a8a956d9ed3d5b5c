"""UTKFace manifests (lnl_cli.tools.utkface): the extreme-bias splits of the paper's IMDB-face experiment."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from lnl_cli.tools import utkface

from helpers import lnl_in_process

REPO = Path(__file__).resolve().parent.parent
GENDER_CODE = {"male": 0, "female": 1}
AGES = {"young": (5, 29), "old": (40, 80)}
MALFORMED = ["61_1_20170109142408075.jpg.chip.jpg", "61_3_20170109150557335.jpg.chip.jpg",  # UTKFace's own two
             "abc_1_0_20170101.jpg.chip.jpg", "30_2_0_20170101.jpg.chip.jpg", "30_1_7_20170101.jpg.chip.jpg",
             "holiday.jpg", "x_y.jpeg"]


def photo_name(gender: str, age: int, index: int, race: int = 0) -> str:
    return f"{age}_{GENDER_CODE[gender]}_{race}_2017010{index % 10}{index:06d}.jpg.chip.jpg"


def write_jpeg(path: Path, shade: int) -> None:
    """A small JPEG; its comment (the file name) keeps every file's bytes distinct, since nearby shades can
    encode alike and the builder keeps photos of equal bytes once."""
    Image.new("RGB", (8, 8), (shade, 255 - shade, 90)).save(path, quality=90, comment=path.name)


def write_folder(folder: Path, per_cell: int | dict = 6, middle: int = 2, malformed: list[str] = ()) -> Path:
    """`per_cell` photos of each (gender, age group) cell, `middle` aged 30-39 per gender, and the
    `malformed` names (as valid JPEGs: only the name is wrong)."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = per_cell if isinstance(per_cell, dict) else {cell: per_cell for cell in utkface.CELLS}
    index = 0
    for (gender, group), size in sizes.items():
        low, high = AGES[group]
        for i in range(size):
            index += 1
            write_jpeg(folder / photo_name(gender, low + i % (high - low + 1), index, race=i % 5), index % 256)
    for gender in GENDER_CODE:
        for i in range(middle):
            index += 1
            write_jpeg(folder / photo_name(gender, 30 + i % 10, index), 7)
    for name in malformed:
        write_jpeg(folder / name, 3)
    return folder


def run_tool(capsys, *args: str) -> tuple[int, str, str]:
    """`python -m lnl_cli.tools.utkface ARGS` in process: (exit code, stdout, stderr). The folders here hold a
    few photos a cell, too few for the default balanced validation split: tests of that split pass the flag."""
    if "--val-balanced-per-cell" not in args:
        args = (*args, "--val-balanced-per-cell", "0")
    try:
        utkface.main(list(args))
        code = 0
    except SystemExit as exited:
        code = exited.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_splits_hold_the_right_cells_and_counts_and_are_disjoint(tmp_path, capsys):
    images = write_folder(tmp_path / "photos", per_cell=6, middle=2, malformed=MALFORMED[:2])
    out = tmp_path / "out"
    code, stdout, stderr = run_tool(capsys, "--images", str(images), "--out", str(out),
                                    "--balanced-per-cell", "2", "--val-fraction", "0.25")
    assert code == 0, stderr
    rows = {name: read_rows(out / f"{name}.csv") for name in utkface.SPLITS}
    assert list(rows["eb1"][0]) == ["path", "gender", "age_group", "age", "age_bin", "race"]
    assert not (out / "val_balanced.csv").exists()  # --val-balanced-per-cell 0: no such split
    cells = {name: {(r["gender"], r["age_group"]) for r in split} for name, split in rows.items()}
    assert cells["balanced_test"] == set(utkface.CELLS)
    for eb, wanted in (("eb1", {("female", "young"), ("male", "old")}), ("eb2", {("female", "old"), ("male", "young")})):
        assert cells[eb] == cells[f"{eb}_train"] == cells[f"{eb}_val"] == wanted
    # 6 per cell: 2 to the balanced test, of the other 4 one (0.25) to validation and 3 to training.
    counts = json.loads((out / "counts.json").read_text())
    assert counts["splits"]["balanced_test"] == {"female/young": 2, "female/old": 2, "male/young": 2, "male/old": 2,
                                                 "total": 8}
    assert counts["splits"]["eb1_train"] == {"female/young": 3, "female/old": 0, "male/young": 0, "male/old": 3,
                                             "total": 6}
    assert counts["splits"]["eb2_val"]["total"] == 2 and counts["splits"]["eb2"]["total"] == 8
    assert all(counts["splits"][name]["total"] == len(rows[name]) for name in utkface.SPLITS)
    assert counts["files"]["malformed_names"] == 2 and counts["files"]["aged_30_39_not_used"] == {"female": 2, "male": 2}
    assert counts["seed"] == 0 and counts["source"] == str(images) and counts["paths"] == "absolute"
    assert {"label", "bias", "balanced_test", "eb1", "eb2", "val"} <= set(counts["rules"])
    # The printed table is the same counts.
    assert "eb1_train" in stdout and "female/young" in stdout and "2 malformed" in stdout
    # Disjoint, and together every usable photo exactly once.
    paths = {name: [r["path"] for r in split] for name, split in rows.items()}
    used = paths["balanced_test"] + paths["eb1"] + paths["eb2"]
    assert len(used) == len(set(used)) == 4 * 6
    for eb in ("eb1", "eb2"):
        assert sorted(paths[f"{eb}_train"] + paths[f"{eb}_val"]) == sorted(paths[eb])
        assert not set(paths[f"{eb}_train"]) & set(paths[f"{eb}_val"])
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in used)
    # Labels come from the name: age, gender and race.
    for row in rows["eb1"]:
        age, gender, race = Path(row["path"]).name.split("_")[:3]
        assert row["age"] == age and GENDER_CODE[row["gender"]] == int(gender)
        assert row["race"] == utkface.RACES[int(race)]
        assert (int(age) <= 29) == (row["age_group"] == "young")
        assert row["age_bin"] == utkface.age_bin(int(age))


def test_age_bins_are_the_protocols_twelve():
    assert utkface.AGE_BINS == ("0-19", "20-24", "25-29", "30-34", "35-39", "40-44", "45-49", "50-54", "55-59",
                                "60-64", "65-69", "70+")
    assert [utkface.age_bin(a) for a in (0, 19, 20, 29, 40, 69, 70, 110)] == [
        "0-19", "0-19", "20-24", "25-29", "40-44", "65-69", "70+", "70+"]


def test_the_balanced_validation_split_holds_every_cell_and_no_test_or_training_photo(tmp_path, capsys):
    images = write_folder(tmp_path / "photos", per_cell=10, middle=0)
    plain, with_val = tmp_path / "plain", tmp_path / "val"
    assert run_tool(capsys, "--images", str(images), "--out", str(plain), "--balanced-per-cell", "2")[0] == 0
    code, stdout, stderr = run_tool(capsys, "--images", str(images), "--out", str(with_val), "--balanced-per-cell",
                                    "2", "--val-balanced-per-cell", "3")
    assert code == 0, stderr
    rows = {name: read_rows(with_val / f"{name}.csv") for name in (*utkface.SPLITS, "val_balanced")}
    counts = json.loads((with_val / "counts.json").read_text())
    assert counts["splits"]["val_balanced"] == {"female/young": 3, "female/old": 3, "male/young": 3, "male/old": 3,
                                                "total": 12}
    assert counts["val_balanced_per_cell"] == 3 and "val_balanced" in counts["rules"]
    paths = {name: {r["path"] for r in split} for name, split in rows.items()}
    val = paths["val_balanced"]
    assert not val & (paths["balanced_test"] | paths["eb1"] | paths["eb2"])
    # For a model trained on EB1, the val split's female/old and male/young photos are bias-conflicting.
    conflicting_for_eb1 = {(r["gender"], r["age_group"]) for r in rows["val_balanced"]} - set(utkface.EB1)
    assert conflicting_for_eb1 == set(utkface.EB2)
    # Drawn after balanced_test: the test split is the same with or without a validation split.
    assert (plain / "balanced_test.csv").read_text() == (with_val / "balanced_test.csv").read_text()
    assert counts["splits"]["eb1"]["total"] == 2 * (10 - 2 - 3)
    assert "val_balanced.csv" in stdout and "--val-balanced-per-cell 3" in stdout


def test_photos_with_the_same_bytes_are_kept_once_and_counted(tmp_path, capsys):
    images = write_folder(tmp_path / "photos", per_cell=6, middle=0)
    originals = sorted(images.iterdir())[:3]
    for index, original in enumerate(originals):  # copies under other valid names (and other labels)
        (images / photo_name("male" if index % 2 else "female", 41 + index, 900 + index)).write_bytes(
            original.read_bytes())
    out = tmp_path / "out"
    code, _, stderr = run_tool(capsys, "--images", str(images), "--out", str(out), "--balanced-per-cell", "2")
    assert code == 0, stderr
    assert "3 duplicate photos skipped" in stderr
    counts = json.loads((out / "counts.json").read_text())
    assert counts["files"]["duplicates"] == 3 and counts["splits"]["available"]["total"] == 4 * 6
    used = [r["path"] for name in ("balanced_test", "eb1", "eb2") for r in read_rows(out / f"{name}.csv")]
    contents = [Path(p).read_bytes() for p in used]
    assert len(contents) == len(set(contents)) == 4 * 6  # no photo's bytes in two places


def test_a_second_build_into_the_same_folder_is_refused_unless_forced(tmp_path, capsys):
    images = write_folder(tmp_path / "photos", per_cell=8, middle=0)
    out = tmp_path / "out"
    assert run_tool(capsys, "--images", str(images), "--out", str(out), "--balanced-per-cell", "2",
                    "--val-balanced-per-cell", "1")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, stdout, stderr = run_tool(capsys, "--images", str(images), "--out", str(out), "--seed", "5")
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and "already holds" in stderr and "--force" in stderr and "counts.json" in stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    code, _, stderr = run_tool(capsys, "--images", str(images), "--out", str(out), "--seed", "5", "--force",
                               "--balanced-per-cell", "2")
    assert code == 0, stderr
    assert json.loads((out / "counts.json").read_text())["seed"] == 5
    assert not (out / "val_balanced.csv").exists()  # the earlier build's split is not left behind


def test_the_same_seed_gives_the_same_files_and_another_seed_others(tmp_path, capsys):
    images = write_folder(tmp_path / "photos", per_cell=12)
    texts = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        code, _, stderr = run_tool(capsys, "--images", str(images), "--out", str(tmp_path / name), "--seed", seed,
                                   "--balanced-per-cell", "3")
        assert code == 0, stderr
        texts[name] = {split: (tmp_path / name / f"{split}.csv").read_text() for split in utkface.SPLITS}
    assert texts["a"] == texts["b"]
    assert texts["a"]["balanced_test"] != texts["c"]["balanced_test"]
    assert texts["a"]["eb1_val"] != texts["c"]["eb1_val"]


def test_malformed_names_are_reported_and_skipped_with_a_count(tmp_path, capsys):
    images = write_folder(tmp_path / "photos", per_cell=4, malformed=MALFORMED)
    (images / "notes.txt").write_text("not a photo")
    (images / "sub").mkdir()
    out = tmp_path / "out"
    code, stdout, stderr = run_tool(capsys, "--images", str(images), "--out", str(out), "--balanced-per-cell", "1")
    assert code == 0, stderr
    (warning,) = stderr.strip().splitlines()
    assert warning.startswith(f"warning: {len(MALFORMED)} malformed file names skipped (not UTKFace's")
    shown = sorted(MALFORMED)[:utkface.MAX_NAMES_SHOWN]
    assert all(name in warning for name in shown) and f"and {len(MALFORMED) - len(shown)} more" in warning
    counts = json.loads((out / "counts.json").read_text())
    assert counts["files"]["malformed_names"] == len(MALFORMED) and counts["files"]["other_files"] == 1
    assert counts["files"]["malformed_examples"] == shown
    listed = {Path(r["path"]).name for name in utkface.SPLITS for r in read_rows(out / f"{name}.csv")}
    assert not listed & set(MALFORMED) and len(listed) == 16


def test_check_images_skips_an_undecodable_photo_with_a_count(tmp_path, capsys):
    images = write_folder(tmp_path / "photos", per_cell=5)
    broken = photo_name("male", 50, 999)
    (images / broken).write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    code, _, stderr = run_tool(capsys, "--images", str(images), "--out", str(tmp_path / "names"),
                               "--balanced-per-cell", "1")
    assert code == 0 and stderr == ""  # by default only the names are read
    assert broken in (tmp_path / "names" / "eb1.csv").read_text() + (tmp_path / "names" / "balanced_test.csv").read_text()
    code, _, stderr = run_tool(capsys, "--images", str(images), "--out", str(tmp_path / "checked"),
                               "--balanced-per-cell", "1", "--check-images")
    assert code == 0 and stderr.strip() == f"warning: 1 unreadable photo skipped (Pillow cannot decode them): {broken}"
    counts = json.loads((tmp_path / "checked" / "counts.json").read_text())
    assert counts["files"]["unreadable"] == 1 and counts["check_images"] is True
    assert counts["splits"]["available"]["male/old"] == 5
    assert all(broken not in (tmp_path / "checked" / f"{n}.csv").read_text() for n in utkface.SPLITS)


def test_paths_are_relative_when_the_photos_lie_inside_the_output_folder(tmp_path, capsys):
    images = write_folder(tmp_path / "dataset" / "crop_part1", per_cell=3)
    code, stdout, stderr = run_tool(capsys, "--images", str(images), "--out", str(tmp_path / "dataset"),
                                    "--balanced-per-cell", "1")
    assert code == 0, stderr
    rows = read_rows(tmp_path / "dataset" / "eb2.csv")
    assert rows and all(r["path"].startswith("crop_part1/") for r in rows)
    assert all((tmp_path / "dataset" / r["path"]).is_file() for r in rows)
    assert json.loads((tmp_path / "dataset" / "counts.json").read_text())["paths"] == "relative"
    assert "image paths relative" in stdout


def test_a_bias_rate_below_one_mixes_in_that_share_of_conflicting_images_and_keeps_the_held_out_splits(
        tmp_path, capsys):
    images = write_folder(tmp_path / "photos", per_cell={("female", "young"): 40, ("female", "old"): 30,
                                                         ("male", "young"): 30, ("male", "old"): 24}, middle=0)
    flags = ["--images", str(images), "--balanced-per-cell", "3", "--val-balanced-per-cell", "2"]
    assert run_tool(capsys, *flags, "--out", str(tmp_path / "extreme"))[0] == 0
    for rate in ("0.9", "0.75"):
        out = tmp_path / f"rate{rate}"
        code, stdout, stderr = run_tool(capsys, *flags, "--out", str(out), "--bias-rate", rate)
        assert code == 0, stderr
        counts = json.loads((out / "counts.json").read_text())
        assert counts["bias_rate"] == float(rate) and "bias_rate" in counts["rules"]
        extreme = json.loads((tmp_path / "extreme" / "counts.json").read_text())
        # The held-out splits are the very same files at every rate: the same photos to choose and test on.
        for name in ("balanced_test", "val_balanced", "eb1_val", "eb2_val"):
            assert (out / f"{name}.csv").read_bytes() == (tmp_path / "extreme" / f"{name}.csv").read_bytes()
        # No opposite split: it would hold the other split's training images.
        assert not (out / "eb1.csv").exists() and not (out / "eb2.csv").exists()
        for eb, cells, other in (("eb1", utkface.EB1, "eb2"), ("eb2", utkface.EB2, "eb1")):
            rows = read_rows(out / f"{eb}_train.csv")
            aligned_rows = read_rows(tmp_path / "extreme" / f"{eb}_train.csv")
            other_rows = {r["path"] for r in read_rows(tmp_path / "extreme" / f"{other}_train.csv")}
            assert {r["path"] for r in aligned_rows} <= {r["path"] for r in rows}  # every aligned image stays
            for gender, group in cells:
                aligned = extreme["splits"][f"{eb}_train"][f"{gender}/{group}"]
                conflicting = [r for r in rows if r["gender"] == gender and r["age_group"] != group]
                assert len(conflicting) == round(aligned * (1 - float(rate)) / float(rate)) > 0
                assert abs(aligned / (aligned + len(conflicting)) - float(rate)) < 0.5 / aligned + 1e-9
                # drawn from the other split's training images, never from a held-out split
                assert {r["path"] for r in conflicting} <= other_rows
        assert "--bias-rate" in stdout and "eb1.csv" not in stdout
    # --force below rate 1 over an extreme-bias build removes its opposite splits: no stale test file.
    code, _, stderr = run_tool(capsys, *flags, "--out", str(tmp_path / "extreme"), "--bias-rate", "0.9", "--force")
    assert code == 0, stderr
    assert not (tmp_path / "extreme" / "eb1.csv").exists() and not (tmp_path / "extreme" / "eb2.csv").exists()


FEW = {("female", "young"): 5, ("female", "old"): 3, ("male", "young"): 5, ("male", "old"): 5}


@pytest.mark.parametrize("setup, args, code, needles", [
    ("missing", [], 3, ["images folder not found"]),
    ("file", [], 3, ["not a folder"]),
    ("empty", [], 3, ["no JPEG files in", "(empty)"]),
    ("text-only", [], 3, ["no JPEG files in", "(1 other files)"]),
    ("malformed-only", [], 3, ["none of the 3 JPEG names", "AGE_GENDER_RACE_DATETIME"]),
    ("few", ["--balanced-per-cell", "4"], 3,
     ["cell female/old has 3 images, fewer than --balanced-per-cell 4",
      "female/young 5, female/old 3, male/young 5, male/old 5"]),
    ("few", ["--balanced-per-cell", "3"], 3, ["eb2_train has no female images: cell female/old has 0 left"]),
    ("few", ["--balanced-per-cell", "2"], 3, ["eb2_val has no female images: cell female/old has 1 left",
                                              "training and validation need 2"]),
    ("few", ["--val-fraction", "0"], 2, ["--val-fraction", "between 0 and 1"]),
    ("few", ["--val-fraction", "1"], 2, ["--val-fraction", "between 0 and 1"]),
    ("few", ["--val-fraction", "tenth"], 2, ["--val-fraction", "not a number"]),
    ("few", ["--balanced-per-cell", "0"], 2, ["--balanced-per-cell", "at least 1"]),
    ("few", ["--balanced-per-cell", "2.5"], 2, ["--balanced-per-cell", "not an integer"]),
    ("few", ["--seed", "-1"], 2, ["--seed", "at least 0"]),
    ("few", ["--val-balanced-per-cell", "-1"], 2, ["--val-balanced-per-cell", "at least 0"]),
    ("few", ["--val-balanced-per-cell", "many"], 2, ["--val-balanced-per-cell", "not an integer"]),
    ("few", ["--val-balanced-per-cell", "2", "--balanced-per-cell", "2"], 3,
     ["cell female/old has 3 images, fewer than --balanced-per-cell 2 + --val-balanced-per-cell 2"]),
    ("few", ["--colour"], 2, ["unrecognized arguments: --colour"]),
    ("few", ["--bias-rate", "0"], 2, ["--bias-rate", "above 0 and at most 1"]),
    ("few", ["--bias-rate", "1.5"], 2, ["--bias-rate", "above 0 and at most 1"]),
    ("few", ["--bias-rate", "most"], 2, ["--bias-rate", "not a number"]),
    ("few", ["--bias-rate", "0.2", "--balanced-per-cell", "1"], 3,
     ["--bias-rate 0.2 needs 12 conflicting female images for eb1_train, but eb2_train has 1"]),
    ("no-images-flag", [], 2, ["--images"]),
    ("out-is-a-file", [], 74, ["cannot write"]),
])
def test_every_bad_input_is_one_error_line_with_its_exit_code(tmp_path, capsys, setup, args, code, needles):
    images, out = tmp_path / "photos", tmp_path / "out"
    if setup == "empty":
        images.mkdir()
    elif setup == "file":
        images.write_text("a file")
    elif setup == "text-only":
        images.mkdir()
        (images / "readme.txt").write_text("hi")
    elif setup == "malformed-only":
        write_folder(images, per_cell=0, middle=0, malformed=MALFORMED[:3])
    elif setup in ("few", "no-images-flag"):
        write_folder(images, per_cell=FEW, middle=0)
    elif setup == "out-is-a-file":
        write_folder(images, per_cell=3, middle=0)
        out.write_text("in the way")
    flags = ([] if setup == "no-images-flag" else ["--images", str(images)]) + ["--out", str(out), *args]
    if setup == "out-is-a-file":
        flags += ["--balanced-per-cell", "1"]
    exit_code, stdout, stderr = run_tool(capsys, *flags)
    assert exit_code == code, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and sum(line.startswith("Error:") for line in lines) == 1, stderr
    assert "Traceback" not in stderr and "usage:" not in stderr
    for needle in needles:
        assert needle in lines[-1], (needle, stderr)
    if code != 74:
        assert not out.exists()  # nothing is written unless every split can be made
        assert stdout == ""


@pytest.mark.slow
def test_the_module_runs_as_a_program_with_one_line_errors(tmp_path):
    result = subprocess.run([sys.executable, "-m", "lnl_cli.tools.utkface", "--images", str(tmp_path / "none"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 3 and result.stderr == f"Error: images folder not found: {tmp_path / 'none'}\n"
    helped = subprocess.run([sys.executable, "-m", "lnl_cli.tools.utkface", "--help"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert helped.returncode == 0 and "--check-images" in helped.stdout and "AGE_GENDER_RACE" in helped.stdout


def _real_utkface() -> Path | None:
    for root in (os.environ.get("LNL_DATA_ROOT"), str(REPO.parent / "shared" / "data")):
        if root and (Path(root) / "utkface" / "crop_part1").is_dir():
            return (Path(root) / "utkface" / "crop_part1").resolve()
    return None


REAL_PHOTOS_PER_CELL = 45  # 4 cells of real photos (and a few aged 30-39, and the two malformed names): ~190


def test_real_photos_build_train_evaluate_probe(tmp_path, capsys):
    """End to end on real UTKFace photos: a slice linked (symlinks, never copies) into a temp folder, built,
    trained for one epoch at 32 x 32, evaluated and probed. The commands run through the CLI app in this
    process (lnl_in_process): three fresh interpreters would spend most of the test importing torch."""
    real = _real_utkface()
    if real is None:
        message = "UTKFace not found at ../shared/data/utkface/crop_part1 or $LNL_DATA_ROOT/utkface/crop_part1"
        if os.environ.get("LNL_REQUIRE_UTKFACE"):
            pytest.fail(message)
        pytest.skip(message)
    started = time.monotonic()
    names = sorted(os.listdir(real))
    by_cell: dict = {}
    for name in names:
        photo = utkface.parse_name(name)
        key = photo.cell if photo else "malformed"
        by_cell.setdefault(key, []).append(name)
    rng = random.Random(0)
    picked = [name for cell in utkface.CELLS for name in rng.sample(by_cell[cell], REAL_PHOTOS_PER_CELL)]
    picked += rng.sample(by_cell[("female", None)], 4) + rng.sample(by_cell[("male", None)], 4)
    picked += by_cell.get("malformed", [])
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in picked:
        (photos / name).symlink_to(real / name)
    out = tmp_path / "utk"
    code, stdout, stderr = run_tool(capsys, "--images", str(photos), "--out", str(out), "--balanced-per-cell", "8",
                                    "--val-balanced-per-cell", "4", "--check-images")
    assert code == 0, stderr
    counts = json.loads((out / "counts.json").read_text())
    assert counts["files"]["malformed_names"] == len(by_cell.get("malformed", []))
    assert counts["files"]["unreadable"] == 0 and counts["splits"]["balanced_test"]["total"] == 32
    copies = counts["files"]["duplicates"]  # a real slice may hold one of UTKFace's duplicated photos
    assert counts["splits"]["eb1"]["total"] + counts["splits"]["eb2"]["total"] == 4 * (REAL_PHOTOS_PER_CELL - 8 - 4) - copies
    run = tmp_path / "run"  # the shipped preset, one short epoch on this slice
    trained = lnl_in_process("train", "--preset", "utkface-eb1", "--out", str(run), "--json", f"data.root={out}",
                             "train.epochs=1", "data.num_workers=0", "train.num_threads=1", "device=cpu")
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["test_size"] == counts["splits"]["eb2"]["total"]  # tested on the opposite split
    assert summary["val_size"] == counts["splits"]["val_balanced"]["total"]  # selection on every group
    evaluated = lnl_in_process("evaluate", "--checkpoint", str(run), "data.test=balanced_test.csv", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert sum(cell["count"] for cell in report["cells"]) == 32
    probed = lnl_in_process("probe-bias", "--checkpoint", str(run), "data.test=balanced_test.csv", "--steps", "20",
                            "--seeds", "1", "--json")
    assert probed.returncode == 0, probed.stderr
    probe = json.loads(probed.stdout)
    assert probe["num_classes"] == 2 and not probe["label_bias_dependence"]["warned"]  # balanced: independent
    print(f"real-photo end-to-end: {time.monotonic() - started:.1f} s")  # reported, never asserted
