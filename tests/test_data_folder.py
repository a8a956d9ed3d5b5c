"""data.type=folder: photos in train/<class>/ folders, the bias from a sub-folder, a file-name pattern or none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lnl_cli import api, load_config
from lnl_cli.data import load_dataset
from lnl_cli.errors import ConfigError, DataError

from helpers import save

TONES = {"red": (200, 30, 30), "blue": (30, 30, 200)}


def _photo(path: Path, label: str, tone: str) -> None:
    image = torch.tensor(TONES[tone], dtype=torch.uint8).view(3, 1, 1).expand(3, 12, 12).contiguous()
    image[:, :6] = 255 if label == "dog" else 0  # the label is a shape, the bias a colour
    path.parent.mkdir(parents=True, exist_ok=True)
    save(image, path)


def write_tree(root: Path, layout: str, splits: dict[str, list[tuple[str, str]]]) -> Path:
    """`layout`: subfolder (split/label/tone/i.png) or pattern (split/label/tone_i.png)."""
    for split, pairs in splits.items():
        for i, (label, tone) in enumerate(pairs):
            name = f"{tone}/{i}.png" if layout == "subfolder" else f"{tone}_{i}.png"
            _photo(root / split / label / name, label, tone)
    return root


BIASED = [("cat", "red")] * 6 + [("dog", "blue")] * 6 + [("cat", "blue"), ("dog", "red")]
UNBIASED = [("cat", "red"), ("cat", "blue"), ("dog", "red"), ("dog", "blue")] * 2
SMALL = ["data.type=folder", "data.image_size=16", "data.num_workers=0"]


@pytest.mark.parametrize("layout, keys", [
    ("subfolder", ["data.bias_from=subfolder"]),
    ("pattern", ["data.bias_from=pattern", "data.bias_pattern=^(?P<bias>[a-z]+)_"]),
])
def test_the_bias_comes_from_a_subfolder_or_the_file_name(tmp_path, layout, keys):
    write_tree(tmp_path, layout, {"train": BIASED, "test": UNBIASED})
    data = load_dataset(load_config(None, [*SMALL, *keys, f"data.root={tmp_path}"]))
    assert data.class_names == ("cat", "dog") and data.bias_names == ("blue", "red")
    assert len(data.train) == 14 and len(data.test) == 8 and data.val is None
    train = data.train
    assert train.labels.tolist().count(0) == 7
    cat_red = ((train.labels == 0) & (train.bias == 1)).sum().item()
    assert cat_red == 6  # cat/red/ holds six photos
    assert data.aligned.tolist() == [[False, True], [True, False]]  # the shortcut: cat-red, dog-blue
    assert "folder train / test in" in data.description


def config_overrides(root: Path) -> list[str]:
    return [*SMALL, f"data.root={root}", "train.epochs=1", "train.batch_size=4", "train.select=val_accuracy",
            "train.num_threads=1"]


def test_without_a_bias_a_baseline_trains_evaluates_and_predicts(tmp_path):
    write_tree(tmp_path, "pattern", {"train": BIASED, "test": UNBIASED, "val": UNBIASED})
    config = load_config(None, [*config_overrides(tmp_path), "method=baseline"])
    data = load_dataset(config)
    assert data.bias_names == ("none",) and len(data.val) == 8  # val/ is read when it exists
    summary = api.train(config, tmp_path / "run")
    assert summary["test"]["num_samples"] == 8
    assert api.evaluate(tmp_path / "run")["num_samples"] == 8
    with pytest.raises(DataError, match=r"probe-bias measures how well the bias can be read, and this data has 1"):
        api.probe(tmp_path / "run")  # a leakage of 0 here would let a CI gate pass for no reason
    with pytest.raises(DataError, match=r"method=lnl removes a bias, and this data has 1 bias value \(none\)"):
        api.train(load_config(None, [*config_overrides(tmp_path), "method=lnl"]), tmp_path / "lnl")


@pytest.mark.parametrize("keys, needle", [
    (["data.bias_from=pattern"], "data.bias_pattern: data.bias_from=pattern needs a regular expression"),
    (["data.bias_from=pattern", "data.bias_pattern=^([a-z]+)_"], "needs a group named 'bias'"),
    (["data.bias_from=pattern", "data.bias_pattern=(?P<bias>[a-z"], "not a regular expression"),
    (["data.bias_pattern=x(?P<bias>y)"], "only read with data.bias_from=pattern"),
])
def test_bias_settings_are_checked_with_the_config(keys, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, [*SMALL, *keys])


@pytest.mark.parametrize("make, keys, needle", [
    (lambda root: None, [], "folder not found: {root}/train"),
    (lambda root: (root / "train").write_text("x"), [], "{root}/train is a file, not a folder"),
    (lambda root: (root / "train").mkdir(), [], "{root}/train holds no class folders"),
    (lambda root: (root / "train" / "cat").mkdir(parents=True), [], "{root}/train/cat holds no photos"),
    (lambda root: write_tree(root, "pattern", {"train": BIASED, "test": UNBIASED}), ["data.bias_from=subfolder"],
     "every photo sits in a bias folder below its class"),
    (lambda root: write_tree(root, "subfolder", {"train": BIASED, "test": UNBIASED}),
     ["data.bias_from=pattern", "data.bias_pattern=^(?P<bias>[a-z]+)_"], "does not match the file name"),
    (lambda root: write_tree(root, "pattern", {"train": BIASED, "test": [("horse", "red")]}), [],
     "label 'horse' does not occur in the training folder"),
])
def test_broken_trees_are_one_line_data_errors(tmp_path, make, keys, needle):
    make(tmp_path)
    with pytest.raises(DataError) as caught:
        load_dataset(load_config(None, [*SMALL, *keys, f"data.root={tmp_path}"]))
    assert needle.format(root=tmp_path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_manifest_path_that_is_a_folder_says_so(tmp_path):
    (tmp_path / "train").mkdir()
    config = load_config(None, ["data.type=manifest", f"data.root={tmp_path}", "data.train=train", "data.test=t.csv"])
    with pytest.raises(DataError, match="train is a folder, not a CSV manifest .*data.type=folder"):
        load_dataset(config)


README_COMMAND = "lnl train data.type=folder data.bias_from=subfolder --data-root photos method=lnl"


@pytest.mark.slow
def test_lnl_train_reads_a_folder_of_photos_from_the_command_line(tmp_path):
    """The README's walkthrough command, as a user types it (on the paper's convnet, for speed)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert README_COMMAND + " model.backbone=resnet18" in readme
    write_tree(tmp_path / "photos", "subfolder", {"train": BIASED, "test": UNBIASED})
    result = subprocess.run([sys.executable, "-m", "lnl_cli", *README_COMMAND.split()[1:], "data.image_size=16",
                             "train.epochs=2",
                             "train.pretrain_epochs=1", "train.batch_size=4", "train.select=last", "--out", "run",
                             "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["test"]["num_samples"] == 8 and "folder train / test" in summary["dataset"]
