"""`lnl train --dry-run` finds what the run would fail on seconds later, without loading the data (issue 31)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lnl_cli import api
from lnl_cli.cli import app
from lnl_cli.errors import ConfigError, DataError

from helpers import save


def _photos(root: Path) -> Path:
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            for i in range(2):
                (root / split / label).mkdir(parents=True, exist_ok=True)
                save(torch.full((3, 8, 8), 60 * i, dtype=torch.uint8), root / split / label / f"{i}.png")
    return root


FOLDER = ["data.type=folder", "data.image_size=16", "train.select=last", "method=baseline"]


def test_a_sound_plan_passes_with_no_warnings(tmp_path):
    plan = api.plan_run("smoke", [*FOLDER, f"data.root={_photos(tmp_path / 'p')}"], tmp_path / "run")
    assert plan["warnings"] == [] and plan["run_dir"] == str(tmp_path / "run")


def test_missing_mnist_is_found_by_the_dry_run(tmp_path):
    with pytest.raises(DataError, match=f"MNIST not found in {tmp_path}/MNIST/raw"):
        api.plan_run("smoke", [f"data.root={tmp_path}"], tmp_path / "run")
    api.plan_run("smoke", [f"data.root={tmp_path}", "data.download=true"], tmp_path / "run")  # would fetch it


def test_a_missing_weights_file_is_found(tmp_path):
    with pytest.raises(ConfigError, match="model.pretrained: no weights file at .*nothing.pth"):
        api.plan_run("smoke", [*FOLDER, f"data.root={_photos(tmp_path / 'p')}", "model.backbone=resnet18",
                               f"model.pretrained={tmp_path / 'nothing.pth'}"], tmp_path / "run")


@pytest.mark.parametrize("damage, overrides, needle", [
    (lambda root: None, ["data.type=manifest", "data.train=train", "data.test=test"], "is a folder, not a CSV manifest"),
    (lambda root: (root / "train" / "cat" / "0.png").write_bytes(b"not a png"), [], "cannot decode image"),  # the first
    (lambda root: __import__("shutil").rmtree(root / "test"), [], "folder not found"),
])
def test_data_that_would_not_read_is_found(tmp_path, damage, overrides, needle):
    root = _photos(tmp_path / "p")
    damage(root)
    with pytest.raises(DataError, match=needle):
        api.plan_run("smoke", [*FOLDER, f"data.root={root}", *overrides], tmp_path / "run")


def test_a_warm_up_covering_every_epoch_is_a_dry_run_warning(tmp_path):
    root = _photos(tmp_path / "p")
    args = ["train", "--preset", "smoke", *FOLDER, f"data.root={root}", "method=lnl", "train.epochs=2",
            "train.pretrain_epochs=2", "--out", str(tmp_path / "run"), "--dry-run", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    warning = "train.pretrain_epochs = 2 covers all 2 epochs: this run never reaches the adversarial phase"
    assert warning in result.stderr
    assert json.loads(result.stdout)["warnings"] == [warning]
    assert not (tmp_path / "run").exists()
