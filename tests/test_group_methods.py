"""Group-aware training: the group-balanced sampler (train.sampler), Group DRO's online group weights,
LNL's label-conditional bias head, and the report of (label, bias) groups that have no training image."""

from __future__ import annotations

import json

import pytest
import torch

from lnl_cli import load_config
from lnl_cli.algorithms import TaskSpec, build_algorithm
from lnl_cli.algorithms.group_dro import initial_weights, move_weights
from lnl_cli.algorithms.lnl import label_slice
from lnl_cli.data import sampling
from lnl_cli.data.base import BiasedSplit, iterate_batches

from helpers import BIASED, UNBIASED, assert_one_line_error, lnl_in_process, write_folder, write_preset

# (label, bias) -> images: one big group, two rare ones, and one in between; 78 images, 4 groups.
SIZES = {(0, 0): 50, (0, 1): 5, (1, 0): 3, (1, 1): 20}


def planted_split() -> BiasedSplit:
    labels = torch.cat([torch.full((n,), label) for (label, _), n in SIZES.items()])
    bias = torch.cat([torch.full((n,), b) for (_, b), n in SIZES.items()])
    images = torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8)
    return BiasedSplit(images, labels, bias, bias.clone())


# ------------------------------------------------------------------ the group-balanced sampler
def test_the_balanced_sampler_draws_every_group_equally_and_every_image_of_a_group_before_repeating():
    split = planted_split()
    order = sampling.epoch_order(split.labels, split.bias, sampling.GROUP_BALANCED, torch.Generator().manual_seed(3))
    per_group = -(-len(split) // len(SIZES))  # ceil(78 / 4) = 20
    assert len(order) == sampling.epoch_size(split.labels, split.bias, sampling.GROUP_BALANCED) == 4 * per_group
    groups = sampling.group_index(split.labels[order], split.bias[order], 2)
    assert torch.bincount(groups, minlength=4).tolist() == [per_group] * 4  # exactly, not in expectation
    draws = torch.bincount(order, minlength=len(split))
    start = 0
    for n in SIZES.values():  # each image of a group drawn floor or ceil of per_group / n times
        counts = draws[start:start + n]
        assert counts.sum() == per_group and counts.max() - counts.min() <= 1, (n, counts.tolist())
        start += n
    assert not torch.equal(order, order.sort().values)  # shuffled across groups


def test_the_balanced_sampler_is_a_function_of_the_generator_and_resumes_exactly_mid_epoch():
    split = planted_split()
    state = torch.Generator().manual_seed(7).get_state()

    def labels_of(start_batch: int) -> list[list[int]]:
        generator = torch.Generator()
        generator.set_state(state)
        batches = iterate_batches(split, 8, (0.0,), (1.0,), generator, start_batch=start_batch,
                                  sampler=sampling.GROUP_BALANCED)
        return [torch.stack([batch.labels, batch.bias]).tolist() for batch in batches]

    full = labels_of(0)
    assert len(full) == 10 and full == labels_of(0)
    assert labels_of(4) == full[4:]  # what a resume from step 4 trains on
    other = torch.Generator().manual_seed(8)
    assert sampling.epoch_order(split.labels, split.bias, sampling.GROUP_BALANCED, other).tolist() != \
        sampling.epoch_order(split.labels, split.bias, sampling.GROUP_BALANCED,
                             torch.Generator().manual_seed(7)).tolist()


def test_the_uniform_sampler_is_one_permutation_and_group_counts_are_label_major():
    split = planted_split()
    order = sampling.epoch_order(split.labels, split.bias, sampling.UNIFORM, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(len(split)))
    assert sampling.group_counts(split.labels, split.bias, 2, 2).tolist() == [[50, 5], [3, 20]]


# ------------------------------------------------------------------ Group DRO
def test_group_dro_weights_move_toward_the_worst_group_on_a_planted_loss_sequence():
    task = TaskSpec(2, 2, 2, group_counts=(50, 5, 3, 0))  # the last group has no training image
    weights = initial_weights(task)
    assert weights.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.0])
    losses = torch.tensor([0.2, 1.5, 0.4, 9.0])
    present = torch.tensor([True, True, True, False])
    history = [weights]
    for _ in range(200):
        history.append(move_weights(history[-1], losses, present, eta=0.01, adjustment=torch.zeros(4)))
    worst = torch.stack(history)[:, 1]
    assert torch.all(worst[1:] > worst[:-1])  # the worst group's weight rises at every step
    assert history[-1][3] == 0 and history[-1].sum() == pytest.approx(1.0)  # an empty group stays out
    # q is proportional to exp(eta * steps * L_g): the closed form of the exponentiated-gradient steps
    expected = torch.exp(0.01 * 200 * losses[:3])
    assert history[-1][:3].tolist() == pytest.approx((expected / expected.sum()).tolist(), rel=1e-4)
    # a group absent from the batch keeps its weight before normalising; the adjustment raises small groups
    absent = move_weights(history[0], losses, torch.tensor([True, False, True, False]), 0.01, torch.zeros(4))
    assert absent[1] < history[1][1]
    adjusted = move_weights(history[0], torch.zeros(4), present, 1.0, torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert adjusted.argmax() == 1


def test_group_dro_update_raises_the_weight_of_the_group_with_the_highest_batch_loss():
    config = load_config("colored-mnist", ["method=group_dro", "group_dro.eta=0.5"])
    torch.manual_seed(0)
    algorithm = build_algorithm(config, TaskSpec(10, 10, 8, group_counts=(1,) * 100))
    split = planted_split()
    images = torch.randn(len(split), 3, 28, 28)
    batch = next(iterate_batches(BiasedSplit((images * 40 + 128).clamp(0, 255).to(torch.uint8), split.labels,
                                             split.bias, split.bias.clone()),
                                 78, (0.5,) * 3, (0.25,) * 3, torch.Generator().manual_seed(0)))
    algorithm.train()
    with torch.no_grad():
        losses = torch.nn.functional.cross_entropy(algorithm.predict(batch.images).float(), batch.labels,
                                                   reduction="none")
    groups = sampling.group_index(batch.labels, batch.bias, 10)
    means = {int(g): float(losses[groups == g].mean()) for g in groups.unique()}
    reported = algorithm.update(batch)
    weights = algorithm.group_weights
    assert int(weights.argmax()) == max(means, key=means.get)
    assert float(reported["max_group_weight"]) == pytest.approx(float(weights.max()))
    assert weights.sum() == pytest.approx(1.0)
    assert "group_weights" in algorithm.state_dict()  # saved with the checkpoint: a resume continues q


# ------------------------------------------------------------------ LNL's label-conditional head
def test_label_slice_picks_each_samples_own_class_bias_logits():
    logits = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 12)  # 2 samples, 3 classes x 4 bias values
    picked = label_slice(logits, torch.tensor([2, 0]), 3)
    assert picked.tolist() == [[8, 9, 10, 11], [12, 13, 14, 15]]
    spatial = torch.randn(2, 6, 5)  # a pixel head's N x (classes x bins) x pixels
    assert torch.equal(label_slice(spatial, torch.tensor([1, 0]), 2)[0], spatial[0, 3:])


@pytest.mark.parametrize("head", ["color_pixels", "conv"])
def test_a_conditional_bias_head_has_one_set_of_outputs_per_class(head):
    plain = load_config("colored-mnist", ["method=lnl", f"model.bias_head={head}"])
    conditional = load_config("colored-mnist", ["method=lnl", f"model.bias_head={head}", "lnl.conditional=true"])
    torch.manual_seed(0)
    features = build_algorithm(plain, TaskSpec(10, 10, 8)).features(torch.randn(4, 3, 28, 28))
    shapes = [build_algorithm(config, TaskSpec(10, 10, 8)).bias_head(features).shape for config in (plain, conditional)]
    assert shapes[1][1] == 10 * shapes[0][1] and shapes[1][2:] == shapes[0][2:]
    algorithm = build_algorithm(conditional, TaskSpec(10, 10, 8))
    assert algorithm.bias_logits(features, torch.tensor([0, 1, 2, 3])).shape == shapes[0]


# ------------------------------------------------------------------ end to end: groups without images
def test_a_group_aware_run_warns_about_and_records_groups_without_training_images(tmp_path, monkeypatch):
    extreme = [("cat", "red")] * 6 + [("dog", "blue")] * 6
    write_folder(tmp_path, {"train": extreme, "test": UNBIASED})
    preset = write_preset(tmp_path, "  sampler: group_balanced\n")
    monkeypatch.chdir(tmp_path)
    result = lnl_in_process("train", "--preset", str(preset), "--out", str(tmp_path / "dro"), "method=group_dro",
                            "train.epochs=1", "--json")
    assert result.returncode == 0, result.stderr
    assert "2 of 4 (label, bias) groups have no training image (cat/blue, dog/red)" in result.stderr
    summary = json.loads((tmp_path / "dro" / "summary.json").read_text())
    assert summary["train_groups"] == {"groups": 4, "with_images": 2, "empty": [["cat", "blue"], ["dog", "red"]]}


def test_a_run_with_every_group_present_is_not_warned_and_balanced_epochs_have_their_draws(tmp_path, monkeypatch):
    from lnl_cli.api import train
    from lnl_cli.callbacks import TrainCallbacks

    class Recorder(TrainCallbacks):
        def __init__(self):
            self.steps, self.messages = [], []

        def on_epoch_start(self, epoch, epochs, phase, steps):
            self.steps.append(steps)

        def on_message(self, text):
            self.messages.append(text)

    write_folder(tmp_path, {"train": BIASED, "test": UNBIASED})
    preset = write_preset(tmp_path, "  sampler: group_balanced\n")
    monkeypatch.chdir(tmp_path)
    recorder = Recorder()
    summary = train(load_config(str(preset), ["method=baseline", "train.batch_size=2"]), tmp_path / "run", recorder)
    assert not any("no training image" in message for message in recorder.messages)
    assert summary["train_groups"] == {"groups": 4, "with_images": 4, "empty": []}
    # 14 images in 4 groups: 4 x ceil(14 / 4) = 16 draws an epoch, 8 batches of 2 (uniform: 14 draws, 7)
    assert recorder.steps == [8, 8]
    uniform = Recorder()
    train(load_config(str(preset), ["method=baseline", "train.batch_size=2", "train.sampler=uniform",
                                    "train.epochs=1"]), tmp_path / "uniform", uniform)
    assert uniform.steps == [7]


@pytest.mark.parametrize("override, needles", [
    ("train.sampler=balanced", ["train.sampler", "'uniform' | 'group_balanced'"]),
    ("group_dro.eta=-1", ["group_dro.eta", "-1"]),
    ("group_dro.adjustment=lots", ["group_dro.adjustment"]),
    ("lnl.conditional=maybe", ["lnl.conditional"]),
])
def test_bad_group_settings_are_one_line_errors_with_exit_2(tmp_path, override, needles):
    result = lnl_in_process("train", "--out", str(tmp_path / "run"), "method=group_dro", override)
    assert_one_line_error(result, 2, *needles)


def test_a_stored_tasks_group_counts_must_match_its_groups():
    stored = TaskSpec(2, 2, 2, group_counts=(1, 2, 3, 4)).to_dict()
    assert TaskSpec.from_dict(stored).group_counts == (1, 2, 3, 4)
    assert TaskSpec.from_dict({**stored, "group_counts": []}).group_counts == ()  # checkpoints before the key
    for bad in ([1, 2, 3], [1, 2, 3, -1], [1, 2, 3, 1.5], "1234"):
        with pytest.raises(ValueError, match="group_counts"):
            TaskSpec.from_dict({**stored, "group_counts": bad})
