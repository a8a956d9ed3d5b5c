"""Model selection on the validation split, the test set read once, and starting from a trained model."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lnl_cli import engine, load_config
from lnl_cli.algorithms import build_algorithm
from lnl_cli.checkpoint import INIT_NETWORKS, load_checkpoint
from lnl_cli.errors import ConfigError
from lnl_cli.selection import Selection

from helpers import assert_one_line_error, lnl_in_process, tiny_dataset

TINY = ["train.batch_size=16", "train.num_threads=1", "lnl.step=alternating"]


def _with_val(classes: int = 10):
    """The tiny dataset plus a validation split (bias-independent, like Colored-MNIST's)."""
    dataset = tiny_dataset(n=64, classes=classes)
    return dataclasses.replace(dataset, val=tiny_dataset(n=48, classes=classes, seed=1).test)


# ---------------------------------------------------------------------------- the choice itself


def test_selection_takes_the_highest_value_keeps_the_earlier_of_ties_and_skips_missing_values():
    planted = [0.10, 0.50, None, 0.40, 0.50, 0.45]
    selection = Selection("val_worst_group_accuracy")
    taken = [selection.offer({"epoch": i + 1, "val_worst_group_accuracy": v}) for i, v in enumerate(planted)]
    assert taken == [True, True, False, False, False, False]
    assert (selection.epoch, selection.value) == (2, 0.5)
    last = Selection()
    assert all(last.offer({"epoch": e}) for e in (1, 2, 3)) and last.epoch == 3 and last.value is None


def test_a_resumed_selection_continues_from_the_saved_best_unless_the_metric_differs():
    saved = Selection("val_accuracy", 4, 0.7).to_dict()
    assert Selection.from_dict(saved, "val_accuracy") == Selection("val_accuracy", 4, 0.7)
    assert Selection.from_dict(saved, "val_worst_group_accuracy") == Selection("val_worst_group_accuracy")
    assert Selection.from_dict(None, "last") == Selection("last")


# ---------------------------------------------------------------------------- in the training loop


class SplitSpy:
    """Wraps a split and records, for every read of its images, how many epochs had ended by then."""

    def __init__(self, split, clock):
        self.split, self.clock, self.reads = split, clock, []

    def __getattr__(self, name):
        return getattr(self.split, name)

    def __len__(self):
        return len(self.split)

    def to(self, device):
        self.split = self.split.to(device)
        return self

    def subset(self, index):
        self.reads.append(("subset", self.clock.epochs_ended))
        return self.split.subset(index)

    def batches(self, chunks, mean, std):
        self.reads.append(("batches", self.clock.epochs_ended))
        return self.split.batches(chunks, mean, std)


class EpochClock(engine.TrainCallbacks):
    epochs_ended = 0

    def on_epoch_end(self, record):
        self.epochs_ended = record["epoch"]


def test_the_planted_best_epoch_becomes_best_pt_and_only_it_is_tested_once_after_training(monkeypatch, tmp_path):
    clock = EpochClock()
    dataset = _with_val()
    test_spy = SplitSpy(dataset.test, clock)
    dataset = dataclasses.replace(dataset, test=test_spy)
    monkeypatch.setattr(engine, "load_dataset", lambda config: dataset)
    planted = iter([0.2, 0.6, 0.3, 0.5])  # validation accuracy of epochs 1..4: epoch 2 is the best
    real_evaluate = engine.evaluate_split
    tested = []

    def evaluate(algorithm, split, data, **kwargs):
        metrics = real_evaluate(algorithm, split, data, **kwargs)
        if split is test_spy:
            tested.append({k: v.clone() for k, v in algorithm.state_dict().items()})
            return metrics
        return {**metrics, "accuracy": next(planted)}

    monkeypatch.setattr(engine, "evaluate_split", evaluate)
    config = load_config("colored-mnist", ["method=lnl", "train.epochs=4", "train.pretrain_epochs=1",
                                           "train.select=val_accuracy", *TINY])
    summary = engine.run_training(config, tmp_path / "run", clock)

    assert summary["selected"] == {"metric": "val_accuracy", "epoch": 2, "value": 0.6, "step": 0}
    assert [r for r in test_spy.reads] == [("batches", 4)]  # never during training; once, at the end
    best, last = load_checkpoint(tmp_path / "run" / "best.pt"), load_checkpoint(tmp_path / "run" / "last.pt")
    assert best["epoch"] == 2 and last["epoch"] == 4
    assert len(tested) == 1 and all(torch.equal(tested[0][k], best["model"][k]) for k in best["model"])
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_accuracy"] for r in records] == [0.2, 0.6, 0.3, 0.5]
    assert not any(key.startswith("test_") for r in records for key in r)
    # a run folder given to a command means its selected model
    assert load_checkpoint(tmp_path / "run")["epoch"] == 2


# ---------------------------------------------------------------------------- checks inside an epoch


def test_checks_inside_an_epoch_are_evenly_spaced_and_never_at_its_ends():
    assert engine.check_steps(430, 4) == {108, 215, 322}
    assert engine.check_steps(4, 2) == {2}
    assert engine.check_steps(3, 8) == {1, 2}  # at most one per batch
    assert engine.check_steps(430, 1) == engine.check_steps(1, 4) == set()


@pytest.mark.parametrize("method, warm_ups, first", [
    ("lnl", ["train.pretrain_epochs=2"], 2),
    ("baseline", ["train.pretrain_epochs=1"], 1),
    ("csad", ["train.pretrain_epochs=1", "csad.bias_warmup_epochs=2", "csad.mi_warmup_epochs=1"], 4),
])
def test_no_checks_inside_an_epoch_before_every_warm_up_is_over(method, warm_ups, first):
    """CSAD's bias and estimator warm-ups leave f and g frozen: a check there would only pick a warm-up model."""
    config = load_config("colored-mnist", [f"method={method}", *warm_ups, "train.epochs=6", "train.select=val_accuracy",
                                           "train.val_checks_per_epoch=4", "data.val_size=100"])
    algorithm = build_algorithm(config, engine.TaskSpec(10, 10, 8))
    ctx = type("Ctx", (), {"config": config, "val_split": object(), "algorithm": algorithm})()
    assert algorithm.first_selectable_epoch() == first
    assert [engine._checks_inside(ctx, epoch) for epoch in range(6)] == [epoch >= first for epoch in range(6)]


def test_a_check_inside_an_epoch_that_wins_is_best_pt_and_the_model_tested(monkeypatch, tmp_path):
    dataset = _with_val()  # 64 images, batch 16: 4 steps an epoch, checked after step 2 and at the end
    test_spy = SplitSpy(dataset.test, EpochClock())
    dataset = dataclasses.replace(dataset, test=test_spy)
    monkeypatch.setattr(engine, "load_dataset", lambda config: dataset)
    # epoch 1 (the warm-up: no check inside), epoch 2 step 2 (the best), epoch 2 end, epoch 3 step 2, epoch 3 end
    planted = iter([0.4, 0.9, 0.5, 0.3, 0.6])
    real_evaluate = engine.evaluate_split
    at_best, tested = {}, []

    def evaluate(algorithm, split, data, **kwargs):
        metrics = real_evaluate(algorithm, split, data, **kwargs)
        if split is test_spy:
            tested.append({k: v.clone() for k, v in algorithm.state_dict().items()})
            return metrics
        value = next(planted)
        if value == 0.9:
            at_best.update({k: v.clone() for k, v in algorithm.state_dict().items()})
        return {**metrics, "accuracy": value}

    monkeypatch.setattr(engine, "evaluate_split", evaluate)
    config = load_config("colored-mnist", ["method=lnl", "train.epochs=3", "train.pretrain_epochs=1",
                                           "train.select=val_accuracy", "train.val_checks_per_epoch=2", *TINY])
    summary = engine.run_training(config, tmp_path / "run")

    assert summary["selected"] == {"metric": "val_accuracy", "epoch": 2, "value": 0.9, "step": 2}
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == 1 and best["partial_epoch"]["step"] == 2  # resumable: epoch 2, after 2 batches
    assert all(torch.equal(at_best[k], best["model"][k]) for k in best["model"])
    assert len(tested) == 1 and all(torch.equal(tested[0][k], at_best[k]) for k in at_best)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r.get("val_accuracy@step2"), r["val_accuracy"]) for r in records] == [(None, 0.4), (0.9, 0.5),
                                                                                   (0.3, 0.6)]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 3


def test_checks_inside_epochs_choose_a_model_and_change_nothing_in_training(monkeypatch, tmp_path):
    monkeypatch.setattr(engine, "load_dataset", lambda config: _with_val())
    final = {}
    for checks in (1, 4):
        config = load_config("colored-mnist", ["method=lnl", "train.epochs=2", "train.pretrain_epochs=1",
                                               "train.select=val_accuracy", f"train.val_checks_per_epoch={checks}",
                                               *TINY])
        engine.run_training(config, tmp_path / f"run{checks}")
        final[checks] = load_checkpoint(tmp_path / f"run{checks}" / "last.pt")["model"]
    assert all(torch.equal(final[1][k], final[4][k]) for k in final[1])


def test_checks_inside_epochs_without_a_metric_to_select_on_are_a_config_error():
    with pytest.raises(ConfigError, match="val_checks_per_epoch"):
        load_config("colored-mnist", ["train.select=last", "train.val_checks_per_epoch=4"])


def test_selecting_on_validation_without_a_validation_split_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.setattr(engine, "load_dataset", lambda config: tiny_dataset(n=32, with_val=False))
    config = load_config("colored-mnist", ["method=baseline", "train.epochs=1", "train.select=val_accuracy", *TINY])
    with pytest.raises(ConfigError, match="needs a validation split"):
        engine.run_training(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- --init-from


def _final_weights(run_dir):
    return load_checkpoint(run_dir / "last.pt")["model"]


def test_init_from_equals_a_manual_two_stage_run(monkeypatch, tmp_path):
    """f and g copied from the first stage, h and the optimizers fresh: what loading the weights by hand
    and training the second stage gives, bit for bit."""
    monkeypatch.setattr(engine, "load_dataset", lambda config: tiny_dataset(n=64))
    stage_one = load_config("colored-mnist", ["method=baseline", "train.epochs=1", *TINY])
    engine.run_training(stage_one, tmp_path / "base")
    second = ["method=lnl", "train.epochs=2", "train.pretrain_epochs=0", "train.adversarial_lr=0.001", *TINY]
    engine.run_training(load_config("colored-mnist", [*second, f"train.init_from={tmp_path / 'base' / 'last.pt'}"]),
                        tmp_path / "init")

    base = load_checkpoint(tmp_path / "base" / "last.pt")["model"]

    def by_hand(config, task, load_pretrained=True):
        algorithm = build_algorithm(config, task, load_pretrained)
        for name in INIT_NETWORKS:
            prefix = name + "."
            getattr(algorithm, name).load_state_dict({k[len(prefix):]: v for k, v in base.items()
                                                      if k.startswith(prefix)})
        return algorithm

    monkeypatch.setattr(engine, "build_algorithm", by_hand)
    engine.run_training(load_config("colored-mnist", second), tmp_path / "manual")
    init, manual = _final_weights(tmp_path / "init"), _final_weights(tmp_path / "manual")
    assert init.keys() == manual.keys()
    assert all(torch.equal(init[k], manual[k]) for k in init)
    some_weight = next(k for k in base if k.startswith("classifier.") and base[k].is_floating_point())
    assert not torch.equal(init[some_weight], base[some_weight])  # the second stage trained on from there


def test_init_from_a_model_of_other_data_is_refused_naming_the_difference(monkeypatch, tmp_path):
    monkeypatch.setattr(engine, "load_dataset", lambda config: tiny_dataset(n=32, classes=10))
    engine.run_training(load_config("colored-mnist", ["method=baseline", "train.epochs=1", *TINY]), tmp_path / "ten")
    monkeypatch.setattr(engine, "load_dataset", lambda config: tiny_dataset(n=32, classes=5))
    config = load_config("colored-mnist", ["method=lnl", "train.epochs=1", "train.pretrain_epochs=0", *TINY,
                                           f"train.init_from={tmp_path / 'ten'}"])
    with pytest.raises(ConfigError, match="num_classes is 10 there, 5 here"):
        engine.run_training(config, tmp_path / "five")


def test_the_adversarial_phase_starts_with_fresh_momentum_at_its_own_learning_rate(monkeypatch, tmp_path):
    monkeypatch.setattr(engine, "load_dataset", lambda config: tiny_dataset(n=32))
    config = load_config("colored-mnist", ["method=lnl", "train.epochs=2", "train.pretrain_epochs=1",
                                           "train.adversarial_lr=0.003", *TINY])
    dataset = tiny_dataset(n=32)
    from lnl_cli.algorithms import TaskSpec

    algorithm = build_algorithm(config, TaskSpec(10, 10, 8, 3, dataset.mean, dataset.std))
    assert algorithm.begin_epoch(0) == "warm-up" and algorithm.optimizer.param_groups[0]["lr"] == 0.01
    algorithm.optimizer.state[next(algorithm.featurizer.parameters())]["momentum_buffer"] = torch.ones(1)
    assert algorithm.begin_epoch(1) == "adversarial"
    assert algorithm.optimizer.param_groups[0]["lr"] == 0.003 and not algorithm.optimizer.state
    algorithm.optimizer.state[next(algorithm.featurizer.parameters())]["momentum_buffer"] = torch.ones(1)
    algorithm.begin_epoch(1, resumed=True)  # a resumed epoch keeps the state its checkpoint restored
    assert algorithm.optimizer.state


# ---------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("args, needle", [
    (["train.select=best"], "train.select"),
    (["train.adversarial_lr=0"], "train.adversarial_lr"),
    (["train.adversarial_lr=nan"], "train.adversarial_lr"),
    (["data.val_size=-1"], "data.val_size"),
    (["data.val_size=40000"], "data.val_size"),
    (["data.bias_mask=all"], "data.bias_mask"),
    (["--init-from", "/nonexistent/last.pt"], "train.init_from"),
])
def test_bad_values_of_the_new_keys_are_one_line_errors_exit_2(tmp_path, args, needle):
    result = lnl_in_process("train", "--preset", "smoke", "--out", str(tmp_path / "run"), *args)
    assert_one_line_error(result, 2, needle)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- --dry-run refuses what train would (issue 28)
def test_dry_run_refuses_a_foreign_init_from_and_selection_without_validation(tmp_path):
    from lnl_cli.algorithms import TaskSpec
    from lnl_cli.checkpoint import make_checkpoint, save_checkpoint

    config = load_config("colored-mnist", ["method=baseline"])
    checkpoint = make_checkpoint(build_algorithm(config, TaskSpec(10, 10, 8), load_pretrained=False), config, epoch=1)
    checkpoint["config"]["model"]["backbone"] = "resnet18"  # trained on another backbone
    save_checkpoint(tmp_path / "foreign.pt", checkpoint)
    foreign = lnl_in_process("train", "--preset", "smoke", "--init-from", str(tmp_path / "foreign.pt"), "--dry-run",
                             "--out", str(tmp_path / "run"))
    assert_one_line_error(foreign, 2, "train.init_from", "model.backbone is 'resnet18' there, 'paper_convnet' here")
    no_val = lnl_in_process("train", "--preset", "smoke", "data.val_size=0", "train.select=val_accuracy", "--dry-run",
                            "--out", str(tmp_path / "run"))
    assert_one_line_error(no_val, 2, "train.select=val_accuracy needs a validation split")
    fine = lnl_in_process("train", "--preset", "smoke", "data.val_size=0", "train.select=last", "--dry-run",
                          "--out", str(tmp_path / "run"))
    assert fine.returncode == 0, fine.stderr
    assert not (tmp_path / "run").exists()
