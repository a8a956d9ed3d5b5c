"""probe.json says what it measured (settings, split seed, checkpoint epoch and hash), and `lnl compare`
marks it stale once the run's checkpoint changes."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from lnl_cli import api, load_config, run_folder
from lnl_cli.checkpoint import load_checkpoint, save_checkpoint

from helpers import lnl

TINY = ["data.train_size=256", "data.test_size=200", "data.val_size=200", "train.epochs=1", "train.pretrain_epochs=1",
        "train.num_threads=1"]
SETTINGS = api.ProbeSettings(seeds=1, steps=20, split_seed=4)


@pytest.fixture(scope="module")
def probed_run(tmp_path_factory, request):
    root = request.getfixturevalue("mnist_root")
    run = tmp_path_factory.mktemp("probed") / "run"
    api.train(load_config("colored-mnist", [*TINY, f"data.root={root}"]), run, plots=False)
    report = api.probe(run_folder.checkpoint_path(run), settings=SETTINGS, max_leakage=1.0)
    return run, report


# Not marked slow: the fast lane's one run on real MNIST (256 digits, one epoch, a few seconds).
@pytest.mark.mnist
def test_probe_json_records_settings_split_seed_and_the_checkpoint_it_measured(probed_run):
    run, report = probed_run
    recorded = run_folder.read_probe(run)
    assert recorded == json.loads(json.dumps(report))  # the file is the report
    assert recorded["settings"] == dataclasses.asdict(SETTINGS)
    assert recorded["split_seed"] == 4 and recorded["split_seeds"] == [4]
    checkpoint = run_folder.checkpoint_path(run)
    assert recorded["checkpoint_epoch"] == load_checkpoint(checkpoint)["epoch"] == 1
    assert recorded["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    leakage, ceiling = recorded["leakage"], recorded["input_ceiling"]
    assert {"mean", "std", "ci_low", "ci_high"} <= set(leakage) and {"mean", "ci_low", "ci_high"} <= set(ceiling)
    assert 0.0 <= leakage["ci_low"] <= leakage["ci_high"] <= 1.0
    assert set(recorded["relative_leakage"]) == {"mean", "ci_low", "ci_high"}
    assert recorded["gate"]["bound"] == "upper_95" and recorded["gate"]["leakage_bound"] == leakage["ci_high"]
    assert recorded["passed"] is True and recorded["max_leakage"] == 1.0  # the old keys stay


@pytest.mark.mnist
@pytest.mark.slow
def test_compare_marks_a_probe_stale_once_the_checkpoint_changes(probed_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(probed_run[0], run)
    (row,) = api.compare([run])
    assert row["probe_stale"] is False and row["leakage"] == probed_run[1]["leakage"]["mean"]
    assert row["leakage_ci_high"] == probed_run[1]["leakage"]["ci_high"]
    checkpoint = run_folder.checkpoint_path(run)
    changed = load_checkpoint(checkpoint)
    changed["epoch"] += 1  # as a resumed run's next save would
    save_checkpoint(checkpoint, changed)
    (row,) = api.compare([run])
    assert row["probe_stale"] is True
    table = lnl("compare", str(run), env={"COLUMNS": "300"})
    assert table.returncode == 0 and "probe_stale" in table.stdout and "yes" in table.stdout, table.stdout
