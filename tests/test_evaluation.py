"""A checkpoint's report on the unbiased test set: data that does not match it, weights that are broken."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
from typer.testing import CliRunner

from lnl_cli import api, evaluation, load_config
from lnl_cli.algorithms import TaskSpec, build_algorithm
from lnl_cli.checkpoint import make_checkpoint, save_checkpoint
from lnl_cli.errors import DataError, NonFiniteWeightsWarning
from lnl_cli.evaluation import check_task_matches

from helpers import tiny_dataset


def _named(dataset, classes, bias):
    return dataclasses.replace(dataset, num_classes=len(classes), num_bias_classes=len(bias),
                               class_names=tuple(classes), bias_names=tuple(bias))


def test_other_bias_names_are_named_in_the_message(tmp_path):
    task = TaskSpec(2, 3, 0, class_names=("cat", "dog"), bias_names=("blue", "green", "red"))
    with pytest.raises(DataError) as info:
        check_task_matches(task, _named(tiny_dataset(), ["cat", "dog"], ["blue", "grey", "red"]), tmp_path / "c.pt")
    message = str(info.value)
    assert "other bias values" in message and "not in the data: 'green'" in message
    assert "not seen in training: 'grey'" in message
    with pytest.raises(DataError, match="the same names in another order"):
        check_task_matches(task, _named(tiny_dataset(), ["cat", "dog"], ["red", "green", "blue"]), tmp_path / "c.pt")
    with pytest.raises(DataError, match=r"3 in training, 2 in the data; not in the data: 'green'"):
        check_task_matches(task, _named(tiny_dataset(), ["cat", "dog"], ["blue", "red"]), tmp_path / "c.pt")
    with pytest.raises(DataError, match=r"other classes .*not in the data: 'dog'; not seen in training: 'bird'"):
        check_task_matches(task, _named(tiny_dataset(), ["cat", "bird"], ["blue", "green", "red"]), tmp_path / "c.pt")
    check_task_matches(task, _named(tiny_dataset(), ["cat", "dog"], ["blue", "green", "red"]), tmp_path / "c.pt")


@pytest.fixture
def nan_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluation, "load_dataset", lambda config, with_train=False: tiny_dataset(n=32))
    config = load_config("colored-mnist", ["method=baseline", "device=cpu"])
    algorithm = build_algorithm(config, TaskSpec(10, 10, 8))
    checkpoint = make_checkpoint(algorithm, config, epoch=1)
    name = next(k for k, v in checkpoint["model"].items() if v.is_floating_point())
    checkpoint["model"][name][...] = float("nan")
    path = tmp_path / "last.pt"
    save_checkpoint(path, checkpoint)
    return path, name


def test_nan_weights_evaluate_with_a_warning_naming_them(nan_checkpoint):
    path, name = nan_checkpoint
    with pytest.warns(NonFiniteWeightsWarning, match=f"NaN or infinite weights \\({name}"):
        report = api.evaluate(path)
    assert report["num_samples"] == 32


def test_lnl_evaluate_prints_one_warning_line_for_nan_weights(nan_checkpoint):
    from lnl_cli.cli import app

    path, name = nan_checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        result = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(path), "--json"])
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and name in lines[0], lines
