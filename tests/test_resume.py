"""Interrupt and resume: a resumed run ends with the same weights as an uninterrupted one."""

import json
import os

import pytest
import torch

from lnl_cli import api, engine, load_config, resume_state
from lnl_cli.algorithms.lnl import LearningNotToLearn as LNL
from lnl_cli.checkpoint import load_checkpoint
from lnl_cli.errors import CheckpointError, ConfigError, TrainingInterrupted

from helpers import tiny_dataset

TINY = ["method=lnl", "train.epochs=3", "train.pretrain_epochs=1", "train.batch_size=16", "train.num_threads=1",
        "lnl.step=alternating"]


@pytest.fixture(autouse=True)
def _tiny_data(monkeypatch):
    monkeypatch.setattr(engine, "load_dataset", lambda config: tiny_dataset(n=64))


class StopAfter(engine.TrainCallbacks):
    """Asks the loop to stop after `steps` progress reports, as a signal handler would."""

    def __init__(self, stop: engine.StopRequest, epoch: int):
        self.stop, self.epoch = stop, epoch

    def on_epoch_start(self, epoch, epochs, phase, steps):
        if epoch == self.epoch:
            self.stop.request("SIGINT", 130)


class Messages(engine.TrainCallbacks):
    """Collects the warnings the loop sends."""

    def __init__(self):
        self.texts = []

    def on_message(self, text):
        self.texts.append(text)


def _weights(run_dir):
    return load_checkpoint(run_dir / "last.pt")["model"]


@pytest.mark.parametrize("stop_epoch", [1, 2])
@pytest.mark.slow
def test_interrupt_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, stop_epoch):
    config = load_config("colored-mnist", TINY)
    reference = api.train(config, tmp_path / "straight")
    stop = engine.StopRequest()
    with pytest.raises(TrainingInterrupted) as info:
        api.train(config, tmp_path / "cut", StopAfter(stop, stop_epoch), stop)
    assert info.value.exit_code == 130
    partial = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert partial["epoch"] == stop_epoch and partial["partial_epoch"]["step"] == 1
    resumed = api.resume(tmp_path / "cut")
    for key, value in _weights(tmp_path / "straight").items():
        assert torch.equal(value, _weights(tmp_path / "cut")[key]), key
    assert resumed["test"]["accuracy"] == reference["test"]["accuracy"]
    lines = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    straight = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    for a, b in zip(lines, straight):
        assert a["label_loss"] == pytest.approx(b["label_loss"], rel=1e-6)


def test_the_learning_rate_ramp_rises_over_the_first_steps_only(tmp_path, monkeypatch):
    """64 images, batch 16: 4 steps an epoch; a 3-step ramp trains steps 1-3 at 1/3, 2/3, 3/3 of the rate."""
    seen = []
    real_update = LNL.update

    def update(self, batch):
        seen.append(round(self.optimizer.param_groups[0]["lr"] / 0.01, 6))
        return real_update(self, batch)

    monkeypatch.setattr(LNL, "update", update)
    api.train(load_config("colored-mnist", [*TINY, "train.lr_ramp_steps=3", "train.lr=0.01",
                                            "train.adversarial_lr=0.01"]), tmp_path / "run")
    assert seen == [round(1 / 3, 6), round(2 / 3, 6), 1.0, 1.0] + [1.0] * 8


def test_a_run_resumed_inside_the_learning_rate_ramp_matches_an_uninterrupted_run(tmp_path):
    config = load_config("colored-mnist", [*TINY, "train.lr_ramp_steps=3"])
    api.train(config, tmp_path / "straight")
    stop = engine.StopRequest()
    with pytest.raises(TrainingInterrupted):
        api.train(config, tmp_path / "cut", StopAfter(stop, 0), stop)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["partial_epoch"]["step"] == 1  # inside the ramp
    api.resume(tmp_path / "cut")
    for key, value in _weights(tmp_path / "straight").items():
        assert torch.equal(value, _weights(tmp_path / "cut")[key]), key


@pytest.mark.slow
def test_extending_a_finished_run_equals_training_longer(tmp_path):
    short = load_config("colored-mnist", [*TINY, "train.epochs=2"])
    api.train(short, tmp_path / "a")
    api.resume(tmp_path / "a", ["train.epochs=3"])
    api.train(load_config("colored-mnist", TINY), tmp_path / "b")
    for key, value in _weights(tmp_path / "b").items():
        assert torch.equal(value, _weights(tmp_path / "a")[key]), key


def test_resuming_a_finished_run_does_nothing(tmp_path):
    config = load_config("colored-mnist", TINY)
    api.train(config, tmp_path / "done")
    before = (tmp_path / "done" / "last.pt").read_bytes()
    summary = api.resume(tmp_path / "done")
    assert summary["already_finished"] is True
    assert (tmp_path / "done" / "last.pt").read_bytes() == before


def test_resuming_with_a_changed_training_key_is_refused(tmp_path):
    api.train(load_config("colored-mnist", TINY), tmp_path / "r")
    with pytest.raises(ConfigError, match="train.lr"):
        api.resume(tmp_path / "r", ["train.lr=0.5", "train.epochs=4"])


def test_a_new_run_refuses_a_folder_that_holds_a_run(tmp_path):
    config = load_config("colored-mnist", TINY)
    api.train(config, tmp_path / "r")
    with pytest.raises(ConfigError, match="already holds a run"):
        api.train(config, tmp_path / "r")


def test_checkpoints_carry_the_global_rng_states(tmp_path):
    import random

    api.train(load_config("colored-mnist", TINY), tmp_path / "r")
    rng = load_checkpoint(tmp_path / "r" / "last.pt")["rng"]
    torch.set_rng_state(rng["torch"])
    expected = torch.rand(3)
    random.seed(123)
    resume_state.restore_rng(rng)
    assert torch.equal(torch.rand(3), expected)
    assert random.getstate()[1] == tuple(rng["python"])


# ------------------------------------------------------------------ metrics and checkpoint stay a pair
def _metrics_epochs(run_dir):
    return [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


class Crash(Exception):
    """A crash (power cut, OOM kill) between the metrics record and the checkpoint of an epoch."""


@pytest.mark.slow
def test_a_crash_between_metrics_and_checkpoint_does_not_duplicate_the_epoch(tmp_path, monkeypatch):
    config = load_config("colored-mnist", [*TINY, "train.epochs=4"])
    api.train(config, tmp_path / "straight")
    real_save = engine.save_checkpoint

    def crash_at_epoch_3(path, checkpoint):
        if checkpoint["epoch"] == 3:
            raise Crash
        real_save(path, checkpoint)

    monkeypatch.setattr(engine, "save_checkpoint", crash_at_epoch_3)
    with pytest.raises(Crash):
        api.train(config, tmp_path / "cut")
    assert _metrics_epochs(tmp_path / "cut") == [1, 2, 3]  # one record ahead of the checkpoint
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    messages = Messages()
    api.resume(tmp_path / "cut", callbacks=messages)
    assert _metrics_epochs(tmp_path / "cut") == [1, 2, 3, 4]
    assert any("dropped 1 metrics record" in text for text in messages.texts)
    for key, value in _weights(tmp_path / "straight").items():
        assert torch.equal(value, _weights(tmp_path / "cut")[key]), key


def test_records_past_the_checkpoint_are_dropped_on_resume(tmp_path):
    stop = engine.StopRequest()
    with pytest.raises(TrainingInterrupted):
        api.train(load_config("colored-mnist", TINY), tmp_path / "r", StopAfter(stop, 1), stop)
    with open(tmp_path / "r" / "metrics.jsonl", "a") as handle:  # as if epoch 2 had been recorded before a crash
        handle.write(json.dumps({"epoch": 2, "label_loss": 9.9}) + "\n")
    api.resume(tmp_path / "r")
    assert _metrics_epochs(tmp_path / "r") == [1, 2, 3]
    assert all(json.loads(line)["label_loss"] != 9.9 for line in (tmp_path / "r" / "metrics.jsonl").open())


def test_a_checkpoint_that_cannot_be_written_takes_its_metrics_record_back(tmp_path, monkeypatch):
    import errno

    from lnl_cli.errors import OutputError

    real_save = engine.save_checkpoint

    def full_at_epoch_2(path, checkpoint):
        if checkpoint["epoch"] == 2:
            raise OutputError(f"cannot write {path}: {errno.errorcode[errno.ENOSPC]}")
        real_save(path, checkpoint)

    monkeypatch.setattr(engine, "save_checkpoint", full_at_epoch_2)
    with pytest.raises(OutputError):
        api.train(load_config("colored-mnist", TINY), tmp_path / "r")
    assert load_checkpoint(tmp_path / "r" / "last.pt")["epoch"] == 1
    assert _metrics_epochs(tmp_path / "r") == [1]


# ------------------------------------------------------------------ resume says what it does
def _edit_config(run_dir, section, key, value):
    import yaml

    path = run_dir / "config.yaml"
    tree = yaml.safe_load(path.read_text())
    tree[section][key] = value
    path.write_text(yaml.safe_dump(tree, sort_keys=False))


def test_an_unsafe_edit_of_config_yaml_is_refused_not_ignored(tmp_path):
    short = load_config("colored-mnist", [*TINY, "train.epochs=2"])
    api.train(short, tmp_path / "r")
    _edit_config(tmp_path / "r", "train", "lr", 0.5)
    with pytest.raises(ConfigError, match=r"train\.lr \(edited in .*config\.yaml\)"):
        api.resume(tmp_path / "r", ["train.epochs=3"])
    api.resume(tmp_path / "r", ["train.epochs=3", "train.lr=0.01"])  # the command line wins over the file
    assert load_checkpoint(tmp_path / "r" / "last.pt")["epoch"] == 3


@pytest.mark.slow
def test_a_safe_edit_of_config_yaml_applies_and_is_announced(tmp_path):
    short = load_config("colored-mnist", [*TINY, "train.epochs=2"])
    api.train(short, tmp_path / "r")
    _edit_config(tmp_path / "r", "train", "epochs", 3)
    messages = Messages()
    summary = api.resume(tmp_path / "r", callbacks=messages)
    assert summary["epochs"] == 3 and _metrics_epochs(tmp_path / "r") == [1, 2, 3]
    assert any("config.yaml" in text and "train.epochs=3" in text for text in messages.texts)


def test_a_broken_config_yaml_is_a_config_error_on_resume(tmp_path):
    api.train(load_config("colored-mnist", [*TINY, "train.epochs=1"]), tmp_path / "r")
    (tmp_path / "r" / "config.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="config.yaml is not valid YAML"):
        api.resume(tmp_path / "r", ["train.epochs=2"])


def test_fewer_epochs_than_already_begun_are_refused(tmp_path):
    stop = engine.StopRequest()
    with pytest.raises(TrainingInterrupted):  # stopped inside epoch 2
        api.train(load_config("colored-mnist", TINY), tmp_path / "cut", StopAfter(stop, 1), stop)
    before = (tmp_path / "cut" / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="train.epochs=1 is fewer than the 2 epochs"):
        api.resume(tmp_path / "cut", ["train.epochs=1"])
    assert (tmp_path / "cut" / "last.pt").read_bytes() == before
    assert not (tmp_path / "cut" / "summary.json").exists()
    assert api.resume(tmp_path / "cut", ["train.epochs=2"])["epochs"] == 2
    with pytest.raises(ConfigError, match="train.epochs=1 is fewer than the 2 epochs"):
        api.resume(tmp_path / "cut", ["train.epochs=1"])  # a finished run too


def _hard_linked_copy(source, target):
    """`cp -al source target`: new folders, every file a second hard link to the original's."""
    target.mkdir()
    for path in source.iterdir():
        if path.is_dir():
            _hard_linked_copy(path, target / path.name)
        else:
            os.link(path, target / path.name)


def test_resuming_a_hard_linked_copy_never_writes_into_the_original(tmp_path):
    run, copy = tmp_path / "run", tmp_path / "copy"
    api.train(load_config("colored-mnist", [*TINY, "train.epochs=2"]), run)
    with open(run / "metrics.jsonl", "a") as handle:  # a record past the checkpoint, as a crash leaves it
        handle.write(json.dumps({"epoch": 3, "label_loss": 1.0}) + "\n")
    _hard_linked_copy(run, copy)
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    api.resume(copy, ["train.epochs=3"])
    after = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    assert after == before  # the trim and the append went to the copy only
    assert _metrics_epochs(copy) == [1, 2, 3] and _metrics_epochs(run) == [1, 2, 3]
    assert os.stat(copy / "metrics.jsonl").st_ino != os.stat(run / "metrics.jsonl").st_ino


@pytest.mark.slow
def test_a_resume_removes_temp_files_a_killed_save_left(tmp_path):
    run = tmp_path / "run"
    api.train(load_config("colored-mnist", [*TINY, "train.epochs=2"]), run)
    (run / ".last.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    (run / ".best.pt.tmp").write_bytes(b"a staged link")
    (run / ".notes.tmp").write_text("the user's")
    api.resume(run, ["train.epochs=3"])
    assert sorted(p.name for p in run.glob(".*.tmp")) == [".notes.tmp"]


# ------------------------------------------------------------------ tampered resume-only fields (issue 28)
TAMPERED = {
    "batch_order_state": ["not a state", torch.zeros(3, dtype=torch.uint8), torch.zeros(5000)],
    "partial_epoch": ["x", {"step": 1}, {"order_state": torch.zeros(2, dtype=torch.uint8), "step": 1, "seen": 1,
                                         "loss_sums": {}}],
    "partial_epoch.step": [-1, "3", 2.5, None],
    "partial_epoch.loss_sums": [None, {"label_loss": "nan please"}],
    "rng": ["x", {"torch": torch.zeros(3)}, {"torch": "state"}],
    "rng.python": [[1, 2, 3], "abc", None],
    "rng.python_position": ["x"],
    "train_seconds": ["soon", -1.0, float("nan")],
    "selection": ["best"],
    "selection.epoch": ["one", [1]],
}


@pytest.fixture(scope="module")
def interrupted_checkpoint(tmp_path_factory):
    """The last.pt of a run stopped inside its second epoch: every resume-only field is there."""
    run = tmp_path_factory.mktemp("cut") / "run"
    stop = engine.StopRequest()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "load_dataset", lambda config: tiny_dataset(n=64))
        with pytest.raises(TrainingInterrupted):
            api.train(load_config("colored-mnist", TINY), run, StopAfter(stop, 1), stop, plots=False)
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint["partial_epoch"] is not None and checkpoint["rng"]
    return checkpoint


@pytest.mark.parametrize("field, value", [(field, value) for field, values in TAMPERED.items() for value in values])
def test_a_tampered_resume_field_is_a_checkpoint_error_naming_it(interrupted_checkpoint, tmp_path, field, value):
    checkpoint = dict(interrupted_checkpoint)
    checkpoint["partial_epoch"] = dict(checkpoint["partial_epoch"])
    checkpoint["rng"] = dict(checkpoint["rng"])
    checkpoint["selection"] = dict(checkpoint["selection"])
    parent, _, leaf = field.rpartition(".")
    (checkpoint[parent] if parent else checkpoint)[leaf] = value
    (tmp_path / "run").mkdir()
    torch.save(checkpoint, tmp_path / "run" / "last.pt")
    with pytest.raises(CheckpointError, match=f"resume field '{field.split('.')[0]}") as raised:
        api.resume(tmp_path / "run", plots=False)
    assert raised.value.exit_code == 4


def test_divergence_in_the_first_epoch_does_not_claim_a_checkpoint_is_kept(tmp_path):
    from lnl_cli.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged) as first:
        api.train(load_config("colored-mnist", [*TINY, "method=baseline", "train.lr=1e30"]), tmp_path / "nan", plots=False)
    assert "no checkpoint had been saved yet, so nothing is kept" in str(first.value)
    assert "last finished epoch is kept" not in str(first.value)
    assert not (tmp_path / "nan").exists()
