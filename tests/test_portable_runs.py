"""Runs that travel (issue 31): relative paths given on the command line are stored resolved, and an
evaluation of another test split does not inherit the training run's subset size."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import yaml

from lnl_cli import api, load_config
from lnl_cli.errors import SubsetEvaluationWarning

from helpers import save

TONES = {"red": (200, 30, 30), "blue": (30, 30, 200)}


def _write_split(root: Path, name: str, pairs: list[tuple[str, str]]) -> None:
    (root / "img").mkdir(parents=True, exist_ok=True)
    lines = ["file,animal,tone"]
    for i, (label, tone) in enumerate(pairs):
        image = torch.tensor(TONES[tone], dtype=torch.uint8).view(3, 1, 1).expand(3, 12, 12).contiguous()
        image[:, :6] = 255 if label == "dog" else 0
        save(image, root / f"img/{name}-{i}.png")
        lines.append(f"img/{name}-{i}.png,{label},{tone}")
    (root / f"{name}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    _write_split(root, "train", [("cat", "red")] * 6 + [("dog", "blue")] * 6)
    _write_split(root, "test", [("cat", "red"), ("cat", "blue"), ("dog", "red"), ("dog", "blue")] * 2)
    _write_split(root, "balanced", [("cat", "red"), ("cat", "blue"), ("dog", "red"), ("dog", "blue")] * 3)
    return root


PHOTO_KEYS = ["data.type=manifest", "data.train=train.csv", "data.test=test.csv", "data.columns.path=file",
              "data.columns.label=animal", "data.columns.bias=tone", "data.image_size=16", "data.num_workers=0",
              "method=baseline", "train.epochs=1", "train.batch_size=4", "train.select=last", "train.num_threads=1"]


def test_a_relative_data_root_override_is_stored_resolved(photos, monkeypatch):
    monkeypatch.chdir(photos.parent)
    config = load_config(None, [*PHOTO_KEYS, "data.root=photos"])
    assert config.data.root == str(photos.resolve())
    monkeypatch.chdir(photos)  # a stored config read from elsewhere still finds the data
    assert load_config(None, {}, base=config).data.root == str(photos.resolve())


def test_words_and_absolute_paths_are_not_resolved(monkeypatch, tmp_path):
    from lnl_cli.config import _resolve_paths
    flat = {"model.pretrained": "imagenet", "data.root": "/abs/data", "train.lr": 0.1, "data.train": "t.csv"}
    assert _resolve_paths(flat, tmp_path) == flat  # data.train is relative to data.root, not a path key
    assert _resolve_paths({"model.pretrained": "w.pth"}, tmp_path) == {"model.pretrained": str(tmp_path / "w.pth")}
    assert _resolve_paths({"data.root": "~/data"}, tmp_path) == {"data.root": "~/data"}  # expanded where read


def test_evaluating_another_test_split_scores_all_of_it(photos, tmp_path):
    run = tmp_path / "run"
    api.train(load_config(None, [*PHOTO_KEYS, f"data.root={photos}", "data.test_size=4"]), run)
    with pytest.warns(SubsetEvaluationWarning, match="scoring a random 4 images of the test split"):
        same_split = api.evaluate(run)
    assert same_split["num_samples"] == 4  # the training run's subset, said aloud
    with warnings.catch_warnings():
        warnings.simplefilter("error", SubsetEvaluationWarning)
        balanced = api.evaluate(run, overrides=["data.test=balanced.csv"])
        whole = api.evaluate(run, overrides=["data.test_size=null"])
        asked = api.evaluate(run, overrides=["data.test=balanced.csv", "data.test_size=4"])
    assert asked["num_samples"] == 4
    assert balanced["num_samples"] == 12 and whole["num_samples"] == 8
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["test_size"] == 4
