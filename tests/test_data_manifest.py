"""Manifest datasets: CSV files of image paths, labels and bias values."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lnl_cli import load_config
from lnl_cli.data import iterate_batches, load_dataset
from lnl_cli.data import manifest as manifest_module
from lnl_cli.data.images import StreamingSplit
from lnl_cli.errors import ConfigError, DataError

from helpers import BIASED, UNBIASED, assert_one_line_error, lnl, save, write_folder, write_preset


@pytest.fixture
def pets(tmp_path) -> Path:
    write_folder(tmp_path, {"train": BIASED, "test": UNBIASED})
    return write_preset(tmp_path)


def test_manifest_dataset_reads_labels_bias_and_the_training_shortcut(pets):
    dataset = load_dataset(load_config(pets))
    assert dataset.class_names == ("cat", "dog") and dataset.bias_names == ("blue", "red")
    assert len(dataset.train) == len(BIASED) and len(dataset.test) == len(UNBIASED)
    assert dataset.train.images.shape == (len(BIASED), 3, 16, 16) and dataset.train.images.dtype == torch.uint8
    assert dataset.train.labels[:6].tolist() == [0] * 6 and dataset.train.bias[:6].tolist() == [1] * 6
    # Red pixels (bias "red") decode as red, resized: the files were read, not invented.
    assert dataset.train.images[0, 0, -1, -1] > 150 and dataset.train.images[0, 2, -1, -1] < 80
    assert dataset.aligned_mask().tolist() == [[False, True], [True, False]]  # cat-red, dog-blue


def test_preset_order_of_classes_wins_and_numbers_sort_as_numbers(tmp_path):
    write_folder(tmp_path, {"train": BIASED, "test": UNBIASED})
    preset = write_preset(tmp_path, "")
    config = load_config(preset, ["data.classes=[dog, cat]", "data.bias_classes=[red, blue]"])
    dataset = load_dataset(config)
    assert dataset.class_names == ("dog", "cat") and dataset.train.labels[0] == 1 and dataset.train.bias[0] == 0
    from lnl_cli.data.manifest import natural_order
    assert natural_order(["10", "9", "2", "9"]) == ["2", "9", "10"]
    assert natural_order(["b", "10", "a"]) == ["10", "a", "b"]


def test_streaming_split_yields_the_same_batches_as_memory(pets):
    memory = load_dataset(load_config(pets, ["data.loading=memory"]))
    stream = load_dataset(load_config(pets, ["data.loading=stream"]))
    assert isinstance(stream.train, StreamingSplit)
    for split_m, split_s in ((memory.train, stream.train), (memory.test, stream.test)):
        batches_m = list(iterate_batches(split_m, 5, memory.mean, memory.std, torch.Generator().manual_seed(3)))
        batches_s = list(iterate_batches(split_s, 5, stream.mean, stream.std, torch.Generator().manual_seed(3)))
        assert len(batches_m) == len(batches_s)
        for a, b in zip(batches_m, batches_s):
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.bias, b.bias)


def test_sharded_and_subset_streaming_batches_match_memory(pets):
    """What a torchrun process gets of a streamed split (its share of each batch, its test shard)."""
    memory = load_dataset(load_config(pets, ["data.loading=memory"]))
    stream = load_dataset(load_config(pets, ["data.loading=stream"]))
    for rank in (0, 1):
        shares = [list(iterate_batches(d.train, 4, d.mean, d.std, torch.Generator().manual_seed(1), shard=(rank, 2)))
                  for d in (memory, stream)]
        # 14 images, global batches of 4: 4, 4, 4, 2 -> each of 2 processes takes 2, 2, 2, 1
        assert [len(b.labels) for b in shares[0]] == [len(b.labels) for b in shares[1]] == [2, 2, 2, 1]
        assert all(torch.equal(a.images, b.images) and torch.equal(a.bias, b.bias) for a, b in zip(*shares))
    index = torch.tensor([5, 0, 3])
    a, b = memory.test.subset(index), stream.test.subset(index)
    assert len(b) == 3 and torch.equal(a.labels, b.labels)
    first = [next(iterate_batches(split, 3, memory.mean, memory.std, shuffle=False)).images for split in (a, b)]
    assert torch.equal(*first)


def test_auto_loading_streams_what_exceeds_the_memory_limit(pets):
    assert not isinstance(load_dataset(load_config(pets)).train, StreamingSplit)
    big = load_dataset(load_config(pets, ["data.memory_limit_mb=1", "data.image_size=512"]))
    assert isinstance(big.train, StreamingSplit)


@pytest.mark.parametrize("break_it, needle", [
    (lambda root: (root / "test.csv").unlink(), "manifest not found: {root}/test.csv"),
    (lambda root: (root / "train.csv").write_text("file,animal\nimg/train-0.png,cat\n"),
     "train.csv: missing column 'tone'"),
    (lambda root: (root / "train.csv").write_text("file,animal,tone\nimg/train-0.png,,red\n"),
     "train.csv row 2: empty 'animal'"),
    (lambda root: (root / "img" / "train-3.png").unlink(), "train.csv row 5: image not found"),
    (lambda root: (root / "img" / "test-1.png").write_bytes(b"not an image"),
     "test.csv row 3: cannot decode image {root}/img/test-1.png"),
    (lambda root: (root / "test.csv").write_text("file,animal,tone\nimg/test-0.png,horse,red\n"),
     "test.csv row 2: label 'horse' does not occur in the training manifest train.csv"),
    (lambda root: (root / "test.csv").write_text("file,animal,tone\nimg/test-0.png,cat,green\n"),
     "test.csv row 2: bias value 'green' does not occur"),
    (lambda root: (root / "train.csv").write_text("file,animal,tone\n"), "train.csv lists no images"),
])
def test_broken_manifests_are_one_line_data_errors_naming_file_and_row(pets, break_it, needle):
    root = pets.parent
    break_it(root)
    with pytest.raises(DataError) as raised:
        load_dataset(load_config(pets))
    assert needle.format(root=root) in str(raised.value) and "\n" not in str(raised.value)


def test_a_file_that_fails_to_decode_while_streaming_is_a_data_error(pets):
    dataset = load_dataset(load_config(pets, ["data.loading=stream"]))
    (pets.parent / "img" / "train-2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"train.csv row 4: cannot decode image"):
        list(iterate_batches(dataset.train, 4, dataset.mean, dataset.std, shuffle=False))


@pytest.mark.slow
def test_cli_reports_manifest_problems_with_exit_code_3(pets):
    (pets.parent / "img" / "test-0.png").unlink()
    result = lnl("train", "--preset", str(pets), "--out", str(pets.parent / "run"))
    assert_one_line_error(result, 3, "test.csv row 2: image not found")
    assert not (pets.parent / "run").exists()


def test_jpeg_and_grayscale_files_load_as_rgb(tmp_path):
    write_folder(tmp_path, {"train": BIASED, "test": UNBIASED})
    gray = torch.full((1, 20, 30), 77, dtype=torch.uint8)
    save(gray, tmp_path / "img" / "test-0.jpg")
    csv_path = tmp_path / "test.csv"
    csv_path.write_text(csv_path.read_text().replace("img/test-0.png", "img/test-0.jpg"))
    dataset = load_dataset(load_config(write_preset(tmp_path)))
    first = dataset.test.images[0]
    assert first.shape == (3, 16, 16) and abs(int(first[0, 8, 8]) - 77) <= 3 and torch.equal(first[0], first[1])


# ------------------------------------------------------------------ class order: total, whatever the hash seed
def _natural_order_under_hash_seed(seed: int, values: list[str]) -> subprocess.Popen:
    """natural_order in a fresh interpreter with PYTHONHASHSEED=seed. Only the function's own source is
    run, so that each process starts in milliseconds instead of importing torch."""
    source = Path(manifest_module.__file__).read_text()
    code = ("import ast\n"
            f"tree = ast.parse({source!r})\n"
            "fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == 'natural_order')\n"
            "space = {}\n"
            "exec(compile(ast.Module([fn], []), 'manifest.py', 'exec'), space)\n"
            f"print(space['natural_order']({values!r}))\n")
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_labels_equal_as_numbers_get_one_order_under_every_hash_seed():
    values = ["2", "02", "1", "10", "002", "+2", "2"]
    processes = [_natural_order_under_hash_seed(seed, values) for seed in range(12)]
    orders = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert orders == {str(["1", "+2", "002", "02", "2", "10"])}
    assert manifest_module.natural_order(list(reversed(values))) == ["1", "+2", "002", "02", "2", "10"]


def test_a_manifest_with_labels_2_and_02_loads_them_as_two_classes_in_a_fixed_order(tmp_path):
    write_folder(tmp_path, {"train": BIASED, "test": UNBIASED})
    for split in ("train", "test"):
        csv_path = tmp_path / f"{split}.csv"
        csv_path.write_text(csv_path.read_text().replace(",cat,", ",2,").replace(",dog,", ",02,"))
    dataset = load_dataset(load_config(write_preset(tmp_path)))
    assert dataset.class_names == ("02", "2") and dataset.train.labels[:6].tolist() == [1] * 6


def test_large_images_decode_without_raw_decompression_bomb_warnings(pets, monkeypatch):
    import warnings

    from PIL import Image

    from lnl_cli.data.images import read_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the 12 x 12 test images are now "large"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_image(pets.parent / "img" / "train-0.png", 16)
    assert any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught)  # Pillow would warn
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        memory = load_dataset(load_config(pets, ["data.loading=memory", "data.num_workers=2"]))
        stream = load_dataset(load_config(pets, ["data.loading=stream"]))
        batches = list(iterate_batches(stream.train, 4, stream.mean, stream.std, shuffle=False))
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert len(memory.train) == len(BIASED) and sum(len(b.labels) for b in batches) == len(BIASED)


# ------------------------------------------------------------------ validation split
# The opposite shortcut of BIASED, and more of it than BIASED has rows of the shortcut: were validation
# counted in the training set's shortcut, each label's majority bias value would flip.
ANTI_BIASED = [("cat", "blue")] * 7 + [("dog", "red")] * 7


def write_split_csv(root: Path, codes: dict[str, object], name: str = "metadata.csv") -> Path:
    """One CSV of every split (Waterbirds-style), from the per-split CSVs of write_folder, with a `fold`
    column holding codes[split]."""
    lines = ["file,animal,tone,fold"]
    for split, code in codes.items():
        lines += [f"{row},{code}" for row in (root / f"{split}.csv").read_text().splitlines()[1:]]
    (root / name).write_text("\n".join(lines) + "\n")
    return root / name


@pytest.fixture
def pets_with_val(tmp_path) -> Path:
    write_folder(tmp_path, {"train": BIASED, "val": ANTI_BIASED, "test": UNBIASED})
    return write_preset(tmp_path)


SPLIT_COLUMN = ["data.train=null", "data.test=null", "data.csv=metadata.csv", "data.columns.split=fold"]


def test_a_val_csv_is_the_validation_split_and_the_shortcut_stays_the_training_sets(pets_with_val):
    dataset = load_dataset(load_config(pets_with_val, ["data.val=val.csv"]))
    assert len(dataset.train) == len(BIASED) and len(dataset.val) == len(ANTI_BIASED)
    assert len(dataset.test) == len(UNBIASED)
    assert dataset.val.labels.tolist() == [0] * 7 + [1] * 7 and dataset.val.bias.tolist() == [0] * 7 + [1] * 7
    assert dataset.aligned_mask().tolist() == [[False, True], [True, False]]  # cat-red, dog-blue, as in train.csv
    assert "train.csv / val.csv / test.csv" in dataset.description
    assert load_dataset(load_config(pets_with_val)).val is None  # no data.val: no validation split
    streamed = load_dataset(load_config(pets_with_val, ["data.val=val.csv", "data.loading=stream"]))
    assert isinstance(streamed.val, StreamingSplit) and len(streamed.val) == len(ANTI_BIASED)


def test_val_size_caps_or_turns_off_the_validation_split(pets_with_val):
    capped = load_dataset(load_config(pets_with_val, ["data.val=val.csv", "data.val_size=3"]))
    assert len(capped.val) == 3 and len(capped.train) == len(BIASED)
    (pets_with_val.parent / "val.csv").unlink()  # not read when turned off
    assert load_dataset(load_config(pets_with_val, ["data.val=val.csv", "data.val_size=0"])).val is None


def test_test_only_loading_skips_the_validation_split(pets_with_val):
    """with_train=False (evaluate, predict) reads neither the training images nor the validation CSV."""
    root = pets_with_val.parent
    (root / "val.csv").unlink()
    (root / "img" / "train-0.png").unlink()
    config = load_config(pets_with_val, ["data.val=val.csv"])
    dataset = load_dataset(config, with_train=False)
    assert dataset.val is None and len(dataset.train) == 0 and len(dataset.test) == len(UNBIASED)
    with pytest.raises(DataError, match="manifest not found: .*val.csv"):
        load_dataset(config)


@pytest.mark.parametrize("codes, overrides", [
    ({"train": "train", "val": "val", "test": "test"}, []),
    ({"train": 0, "val": 1, "test": 2}, []),                       # Waterbirds' metadata.csv
    ({"train": "valid", "val": "train", "test": "holdout"},        # any coding, through data.split_values
     ["data.split_values.train=[valid]", "data.split_values.val=[train]", "data.split_values.test=[holdout]"]),
])
def test_a_split_column_gives_every_split_from_one_csv(pets_with_val, codes, overrides):
    write_split_csv(pets_with_val.parent, codes)
    dataset = load_dataset(load_config(pets_with_val, SPLIT_COLUMN + overrides))
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (len(BIASED), len(ANTI_BIASED), len(UNBIASED))
    assert dataset.train.labels[:6].tolist() == [0] * 6 and dataset.val.bias.tolist() == [0] * 7 + [1] * 7
    assert dataset.aligned_mask().tolist() == [[False, True], [True, False]]
    assert "metadata.csv (split column 'fold')" in dataset.description
    test_only = load_dataset(load_config(pets_with_val, SPLIT_COLUMN + overrides), with_train=False)
    assert test_only.val is None and len(test_only.test) == len(UNBIASED)


def test_split_values_no_split_holds_are_one_line_data_errors_naming_file_rows_and_values(pets_with_val):
    root = pets_with_val.parent
    path = write_split_csv(root, {"train": 0, "val": 1, "test": 2})
    lines = path.read_text().splitlines()
    lines[3], lines[5], lines[9] = lines[3][:-1] + "3", lines[5][:-1] + "dev", lines[9][:-1] + "3"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as raised:
        load_dataset(load_config(pets_with_val, SPLIT_COLUMN))
    message = str(raised.value)
    assert f"{path}: 3 of {len(lines) - 1} rows have a 'fold' value that is no split" in message
    assert "'3' (row 4), 'dev' (row 6)" in message and "data.split_values" in message and "\n" not in message


def test_a_split_without_rows_is_a_data_error_unless_validation_is_off(pets_with_val):
    root = pets_with_val.parent
    write_split_csv(root, {"train": "train", "test": "test"})
    with pytest.raises(DataError, match=r"metadata.csv: the val split has no rows .*data.val_size=0") as raised:
        load_dataset(load_config(pets_with_val, SPLIT_COLUMN))
    assert "\n" not in str(raised.value)
    assert load_dataset(load_config(pets_with_val, SPLIT_COLUMN + ["data.val_size=0"])).val is None
    write_split_csv(root, {"train": "train", "val": "val"})
    with pytest.raises(DataError, match=r"metadata.csv: the test split has no rows"):
        load_dataset(load_config(pets_with_val, SPLIT_COLUMN))


@pytest.mark.parametrize("overrides, needle", [
    (SPLIT_COLUMN + ["data.val=val.csv"], "data.val and data.columns.split: choose one"),
    (["data.train=null", "data.test=null", "data.columns.split=fold"], "data.columns.split: needs data.csv"),
    (SPLIT_COLUMN + ["data.train=train.csv"], "data.train: not used with data.columns.split"),
    (["data.csv=metadata.csv"], "data.csv: a CSV of every split needs data.columns.split"),
    (SPLIT_COLUMN + ["data.split_values.val=[1, 2]"], "data.split_values: '2' is listed for both val and test"),
    (SPLIT_COLUMN + ["data.split_values.test=[]"], "data.split_values.test: needs at least one value"),
])
def test_contradictory_split_settings_are_config_errors(pets_with_val, overrides, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_config(pets_with_val, overrides)


@pytest.mark.slow
def test_lnl_train_runs_on_a_manifest_with_a_split_column(pets_with_val):
    write_split_csv(pets_with_val.parent, {"train": 0, "val": 1, "test": 2})
    out = pets_with_val.parent / "run"
    result = lnl("train", "--preset", str(pets_with_val), "--out", str(out), *SPLIT_COLUMN,
                 "train.epochs=1", "train.pretrain_epochs=0", "device=cpu")
    assert result.returncode == 0, result.stderr
    assert (out / "config.yaml").is_file() and "fold" in (out / "config.yaml").read_text()
