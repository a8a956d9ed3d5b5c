"""What a run folder offers besides metrics.jsonl: results.csv and TensorBoard event files."""

from __future__ import annotations

import csv
import json

import pytest

from lnl_cli import api, load_config
from lnl_cli.errors import ConfigError

TINY = ["data.train_size=256", "data.test_size=128", "data.val_size=128", "train.epochs=2", "train.pretrain_epochs=1"]


@pytest.mark.mnist
@pytest.mark.slow
def test_results_csv_has_one_row_per_epoch_with_the_metrics_of_metrics_jsonl(mnist_root, tmp_path):
    pytest.importorskip("tensorboard", reason="pip install 'lnl[tensorboard]'")
    config = load_config("colored-mnist", [*TINY, f"data.root={mnist_root}", "train.tensorboard=true"])
    api.train(config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [r["epoch"] for r in records] == [1, 2]
    for row, record in zip(rows, records):
        for key, value in record.items():
            assert row[key] == str(value), key
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    accuracy = [(e.step, e.value) for e in events.Scalars("val_accuracy")]
    assert accuracy == [(r["epoch"], pytest.approx(r["val_accuracy"])) for r in records]
    assert "label_loss" in events.Tags()["scalars"]


def test_tensorboard_without_the_package_is_a_config_error(monkeypatch):
    from lnl_cli import tensorboard

    monkeypatch.setattr(tensorboard, "available", lambda: False)
    with pytest.raises(ConfigError, match="pip install 'lnl\\[tensorboard\\]'"):
        load_config("colored-mnist", ["train.tensorboard=true"])


@pytest.mark.mnist
@pytest.mark.slow
def test_the_python_api_writes_what_the_cli_writes_and_shows_progress_when_asked(mnist_root, tmp_path, capfd):
    pytest.importorskip("matplotlib", reason="pip install 'lnl[plots]'")
    config = load_config("colored-mnist", [*TINY, f"data.root={mnist_root}"])
    api.train(config, tmp_path / "run", progress=True)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "metrics.jsonl", "results.csv", "last.pt", "summary.json", "losses.png",
            "accuracy.png"} <= names
    shown = capfd.readouterr().err
    assert "epoch 1/2 warm-up" in shown and "epoch 2/2 adversarial" in shown
    api.train(config, tmp_path / "quiet", plots=False)
    assert capfd.readouterr().err == "" and not (tmp_path / "quiet" / "losses.png").exists()
    api.probe(tmp_path / "run" / "last.pt", settings=api.ProbeSettings(seeds=1, steps=20))
    assert (tmp_path / "run" / "probe.json").is_file()
