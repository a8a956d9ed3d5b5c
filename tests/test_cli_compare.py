"""`lnl compare` as a table: whole run names, only the config columns that differ, readable numbers."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers import lnl

pytestmark = pytest.mark.slow  # every test runs `lnl compare` in a subprocess

TEST = {"accuracy": 0.81234, "aligned_accuracy": 0.9, "conflicting_accuracy": 0.8, "worst_group_accuracy": 0.5,
        "bias_head_accuracy": 0.2}


def _run(folder, method, lr, train_seconds):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"test": TEST, "seconds": 3.0, "train_seconds": train_seconds}))
    config = {"method": method, "seed": 0, "data": {"type": "manifest"}, "train": {"lr": lr, "epochs": 5}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_the_table_shows_whole_names_and_only_what_differs(tmp_path):
    long_name = tmp_path / ("a-very-long-run-folder-name-" * 4 + "1")
    runs = [_run(long_name, "lnl", 0.01, 4.7), _run(tmp_path / "b", "lnl", 0.001, 3725.0)]
    result = lnl("compare", *map(str, runs))
    assert result.returncode == 0, result.stderr
    assert str(long_name) in result.stdout  # never cut, even piped at 80 columns
    header = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
    assert " lr " in header and "method" not in header and "color_var" not in header and " epochs " not in header
    assert "4.7s" in result.stdout and "1h02m" in result.stdout  # total training time, resumes included
    assert "0.8123" in result.stdout and "0.001 " in result.stdout


def test_json_and_csv_keep_every_column(tmp_path):
    runs = [_run(tmp_path / "a", "lnl", 0.01, 10.0), _run(tmp_path / "b", "lnl", 0.01, 20.0)]
    rows = json.loads(lnl("compare", *map(str, runs), "--json").stdout)
    assert "method" in rows[0] and "data.color_var" in rows[0] and rows[0]["seconds"] in (10.0, 20.0)
    assert lnl("compare", *map(str, runs), "--csv").stdout.splitlines()[0].startswith("run,method,data.color_var")


def test_same_named_keys_of_two_methods_keep_their_section_and_small_rates_their_digits(tmp_path):
    runs = []
    for name, method, lnl_lambda, csad_lambda, rate in (("a", "lnl", 0.01, 1.0, 0.001), ("b", "csad", 0.1, 2.0, 5e-05)):
        folder = _run(tmp_path / name, method, 0.01, 1.0)
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config.update({"lnl": {"lambda": lnl_lambda}, "csad": {"lambda": csad_lambda}})
        config["train"]["adversarial_lr"] = rate
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        runs.append(folder)
    result = lnl("compare", *map(str, runs))
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
    assert "lnl.lambda" in header and "csad.lambda" in header and "method" in header
    assert "5e-05" in result.stdout  # not rounded to 0.0001
