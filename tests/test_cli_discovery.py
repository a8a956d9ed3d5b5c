"""Finding one's way from the tool itself: `lnl presets show`, `lnl config keys`, `lnl train --dry-run`."""

from __future__ import annotations

import json

import pytest
import yaml

from lnl_cli import config

from helpers import assert_one_line_error, lnl, lnl_all

pytestmark = pytest.mark.slow  # every test runs `lnl` in a subprocess


def test_presets_show_prints_the_header_and_the_resolved_config_that_loads_back():
    result, as_json = lnl_all(["presets", "show", "colored-mnist-fast"],
                              ["presets", "show", "colored-mnist", "seed=7", "--json"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Colored-MNIST")
    tree = yaml.safe_load(result.stdout)
    assert tree["name"] == "colored-mnist-fast" and tree["train"]["pretrain_epochs"] == 8
    assert config.from_dict(tree) == config.load_config("colored-mnist-fast")
    shown = json.loads(as_json.stdout)
    assert shown["config"]["seed"] == 7 and shown["header"].startswith("#")


def test_presets_show_refuses_unknown_presets_with_a_suggestion():
    assert_one_line_error(lnl("presets", "show", "colored-mnis"), 2, "did you mean 'colored-mnist'")


def test_config_keys_lists_every_key_with_its_default_and_meaning():
    as_json, grepped = lnl_all(["config", "keys", "--json"], ["config", "keys", "--grep", "train.lr"])
    rows = json.loads(as_json.stdout)
    assert [r["key"] for r in rows] == list(config.SPECS)
    lam = next(r for r in rows if r["key"] == "lnl.lambda")
    assert lam["default"] == 0.01 and "entropy" in lam["help"] and lam["type"] == "float"
    plain = grepped.stdout.splitlines()
    assert plain and all(line.startswith("train.lr") for line in plain)


def test_dry_run_validates_prints_the_config_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    result, as_json, bad = lnl_all(["train", "--dry-run", "--out", str(out), "seed=5", "train.epochs=3"],
                                   ["train", "--dry-run", "--json", "--out", str(out)],
                                   ["train", "--dry-run", "train.lr=-1"])
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["seed"] == 5
    assert str(out) in result.stderr and not out.exists()
    planned = json.loads(as_json.stdout)
    assert planned["run_dir"] == str(out) and planned["config"]["method"] == "lnl"
    assert_one_line_error(bad, 2, "train.lr")
    (out).mkdir()
    (out / "metrics.jsonl").write_text("")
    assert_one_line_error(lnl("train", "--dry-run", "--out", str(out)), 2, "already holds a run")
