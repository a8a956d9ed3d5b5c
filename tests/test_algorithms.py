"""Every registered algorithm, on tiny synthetic data."""

import copy
import math

import pytest
import torch

from lnl_cli import load_config
from lnl_cli.algorithms import ALGORITHMS, METHODS, TaskSpec, build_algorithm
from lnl_cli.data.base import iterate_batches

from helpers import image_batch as _image_batch
from helpers import tiny_dataset


def _setup(method, *overrides):
    """Every method straight in its adversarial phase (no warm-up of any kind) on one tiny batch."""
    config = load_config("colored-mnist", [f"method={method}", "train.pretrain_epochs=0", "csad.bias_warmup_epochs=0",
                                           "csad.mi_warmup_epochs=0", *overrides])
    dataset = tiny_dataset()
    torch.manual_seed(0)
    algorithm = build_algorithm(config, TaskSpec(10, 10, 8))
    batch = next(iterate_batches(dataset.train, 32, dataset.mean, dataset.std, torch.Generator().manual_seed(0)))
    return config, algorithm, batch


@pytest.mark.parametrize("method", sorted(ALGORITHMS))
def test_every_algorithm_updates_predicts_and_round_trips_its_state(method):
    config, algorithm, batch = _setup(method)
    before = copy.deepcopy(algorithm.state_dict())
    algorithm.begin_epoch(0)
    losses = algorithm.update(batch)
    assert "label_loss" in losses
    assert set(losses) <= set(METHODS[method].losses), "update reports a loss its MethodSpec does not declare"
    assert all(math.isfinite(float(v)) for v in losses.values())
    changed = [k for k, v in algorithm.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("featurizer") for k in changed) and any(k.startswith("classifier") for k in changed)
    assert algorithm.predict(batch.images).shape == (32, 10)
    clone = build_algorithm(config, TaskSpec(10, 10, 8))
    clone.load_state_dict(algorithm.state_dict())
    clone.load_optimizer_state(algorithm.optimizer_state())
    algorithm.eval(), clone.eval()
    assert torch.equal(clone.predict(batch.images), algorithm.predict(batch.images))


def test_lnl_reports_its_adversarial_losses_and_trains_the_bias_head():
    _, algorithm, batch = _setup("lnl")
    assert algorithm.begin_epoch(0) == "adversarial"
    head_before = copy.deepcopy(algorithm.bias_head.state_dict())
    losses = algorithm.update(batch)
    assert set(losses) == {"label_loss", "neg_entropy", "bias_loss"}
    assert -math.log(8) - 1e-6 <= float(losses["neg_entropy"]) <= 0
    assert not torch.equal(algorithm.bias_head.hidden.weight, head_before["hidden.weight"])


def test_lnl_feature_step_leaves_the_bias_head_untouched():
    _, algorithm, batch = _setup("lnl")
    algorithm.begin_epoch(0)
    head_before = copy.deepcopy(algorithm.bias_head.state_dict())
    algorithm._feature_step(batch)
    for name, value in algorithm.bias_head.state_dict().items():
        if "running" not in name and "num_batches" not in name:  # BN statistics do move in train mode
            assert torch.equal(value, head_before[name]), name


def test_lnl_bias_step_sends_the_reversed_scaled_gradient_to_f():
    """With grl_scale s, f's gradient from the bias step is -s times the plain bias-loss gradient."""
    from lnl_cli.algorithms.lnl import bias_loss

    for scale in (0.1, 1.0):
        _, algorithm, batch = _setup("lnl", f"lnl.grl_scale={scale}")
        algorithm.optimizer.step = lambda: None  # keep weights fixed to read the gradient
        algorithm.bias_optimizer.step = lambda: None
        algorithm._bias_step(batch)
        reversed_grad = algorithm.featurizer.layers[1].weight.grad.clone()
        algorithm.zero_grad(set_to_none=True)
        bias_loss(algorithm.bias_head(algorithm.featurizer(batch.images)), batch.bias_targets, 3).backward()
        plain = algorithm.featurizer.layers[1].weight.grad
        assert torch.allclose(reversed_grad, -scale * plain, rtol=1e-4, atol=1e-7)


def test_lnl_warm_up_is_plain_cross_entropy_and_the_lr_restarts_with_the_game():
    config, algorithm, batch = _setup("lnl", "train.pretrain_epochs=2", "train.lr_decay_epochs=1",
                                      "train.lr_decay_rate=0.5")
    assert algorithm.begin_epoch(0) == "warm-up"
    assert set(algorithm.update(batch)) == {"label_loss"}
    assert algorithm.begin_epoch(1) == "warm-up"
    assert algorithm.optimizer.param_groups[0]["lr"] == pytest.approx(config.train.lr * 0.5)
    assert algorithm.begin_epoch(2) == "adversarial"
    assert algorithm.optimizer.param_groups[0]["lr"] == pytest.approx(config.train.lr)
    assert algorithm.begin_epoch(3) == "adversarial"
    assert algorithm.bias_optimizer.param_groups[0]["lr"] == pytest.approx(config.train.lr * 0.5)


def test_single_pass_step_applies_the_same_gradients_as_the_two_alternating_passes():
    """At fixed weights, one single-pass update equals the sum of the paper's two passes per parameter:
    f gets CE + lambda*negentropy + reversed bias loss, g gets CE only, h gets its bias loss only."""
    grads = {}
    for mode in ("alternating", "single_pass"):
        _, algorithm, batch = _setup("lnl", f"lnl.step={mode}", "lnl.lambda=0.5", "lnl.grl_scale=0.3")
        algorithm.begin_epoch(0)
        algorithm.optimizer.step = lambda: None
        algorithm.bias_optimizer.step = lambda: None
        total = {}
        if mode == "alternating":
            algorithm._feature_step(batch)
            total = {n: p.grad.clone() for n, p in algorithm.named_parameters() if p.grad is not None}
            algorithm._bias_step(batch)
            for n, p in algorithm.named_parameters():
                if p.grad is not None:
                    total[n] = total.get(n, 0) + p.grad
        else:
            algorithm.update(batch)
            total = {n: p.grad.clone() for n, p in algorithm.named_parameters() if p.grad is not None}
        grads[mode] = total
    assert set(grads["alternating"]) == set(grads["single_pass"])
    for name, expected in grads["alternating"].items():
        assert torch.allclose(grads["single_pass"][name], expected, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("method", sorted(ALGORITHMS))
def test_bf16_autocast_path_runs_on_cpu(method):
    config, algorithm, batch = _setup(method, "train.precision=bf16")
    algorithm.prepare(torch.device("cpu"))
    assert algorithm.autocast_dtype == torch.bfloat16
    algorithm.begin_epoch(0)
    losses = algorithm.update(batch)
    assert all(math.isfinite(float(v)) for v in losses.values())
    assert algorithm.predict(batch.images).dtype == torch.bfloat16


@pytest.mark.parametrize("native", [False, True], ids=["fp32-only-cpu", "native-bf16-cpu"])
@pytest.mark.parametrize("precision, expected", [("auto", None), ("fp32", None), ("bf16", torch.bfloat16)])
def test_precision_auto_follows_the_cpus_bf16_support_and_explicit_choices_do_not(monkeypatch, native, precision,
                                                                                   expected):
    """What train.precision decides on a CPU with and without native bf16 (faked, so both hold everywhere)."""
    from lnl_cli.algorithms import base

    monkeypatch.setattr(base, "native_bf16", lambda device: native)
    _, algorithm, _ = _setup("lnl", f"train.precision={precision}")
    algorithm.prepare(torch.device("cpu"))
    wanted = torch.bfloat16 if precision == "auto" and native else expected
    assert algorithm.autocast_dtype == wanted


@pytest.mark.slow
def test_compiled_single_pass_lnl_step_matches_the_eager_one():
    """The single-pass step back-propagates through h twice; a compiled backward refused that (donated
    buffers) until train.compile turned the donation off. Slow-ish: compiles three tiny networks."""
    results = []
    for compiled in (False, True):
        config, algorithm, batch = _setup("lnl", "lnl.step=single_pass", f"train.compile={str(compiled).lower()}",
                                          "train.precision=fp32")
        algorithm.prepare(torch.device("cpu"))
        algorithm.begin_epoch(0)
        losses = algorithm.update(batch)
        results.append((losses, copy.deepcopy(algorithm.featurizer.state_dict())))
    (eager_losses, eager_f), (compiled_losses, compiled_f) = results
    for name in eager_losses:
        assert float(compiled_losses[name]) == pytest.approx(float(eager_losses[name]), rel=1e-4, abs=1e-5)
    for key in eager_f:
        assert torch.allclose(compiled_f[key].float(), eager_f[key].float(), rtol=1e-4, atol=1e-5), key


def test_gray_sees_only_luma():
    config = load_config("colored-mnist", ["method=gray"])
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    algorithm = build_algorithm(config, TaskSpec(10, 10, 8, 3, mean, std))
    red = torch.tensor([0.6, 0.0, 0.0])
    green_same_luma = torch.tensor([0.0, 0.6 * 0.299 / 0.587, 0.0])
    images = torch.stack([red, green_same_luma]).view(2, 3, 1, 1).expand(2, 3, 4, 4)
    normalised = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    seen = algorithm._input(normalised)
    assert torch.allclose(seen[0], seen[1], atol=1e-6)
    assert not torch.allclose(normalised[0], normalised[1])


def test_blind_eye_head_step_does_not_reach_f_and_its_confusion_term_is_bounded():
    _, algorithm, batch = _setup("blind_eye", "lnl.step=alternating")
    algorithm.begin_epoch(0)
    algorithm.optimizer.step = lambda: None
    algorithm._bias_step(batch)
    assert all(p.grad is None or not p.grad.any() for p in algorithm.featurizer.parameters())
    assert any(p.grad is not None and p.grad.any() for p in algorithm.bias_head.parameters())
    losses = algorithm.update(batch)
    assert float(losses["confusion"]) >= math.log(8) - 1e-5  # CE to uniform >= entropy of uniform


def test_plain_cross_entropy_phases_follow_their_own_decay_period():
    config, algorithm, _ = _setup("lnl", "train.pretrain_epochs=4", "train.pretrain_lr_decay_epochs=2",
                                  "train.lr_decay_epochs=1", "train.lr_decay_rate=0.5")
    lrs = []
    for epoch in range(6):
        algorithm.begin_epoch(epoch)
        lrs.append(algorithm.optimizer.param_groups[0]["lr"] / config.train.lr)
    assert lrs == pytest.approx([1, 1, 0.5, 0.5, 1, 0.5])  # warm-up every 2 epochs, then every epoch
    baseline_config, baseline, _ = _setup("baseline", "train.pretrain_lr_decay_epochs=2", "train.lr_decay_epochs=1",
                                          "train.lr_decay_rate=0.5")
    baseline.begin_epoch(3)
    assert baseline.optimizer.param_groups[0]["lr"] == pytest.approx(baseline_config.train.lr * 0.5)


@pytest.mark.parametrize("method", sorted(ALGORITHMS))
@pytest.mark.parametrize("head", ["conv", "mlp", "spatial"])
def test_every_algorithm_trains_a_categorical_bias_head(method, head):
    config = load_config(None, [f"method={method}", "data.type=manifest", "data.train=a.csv", "data.test=b.csv",
                                f"model.bias_head={head}", "train.precision=fp32", "model.bias_head_width=16",
                                "data.image_size=28"])  # the size of the batch: lnl_probe's head is sized by it
    algorithm = build_algorithm(config, TaskSpec(2, 3, 0))
    batch = _image_batch(size=28)
    algorithm.begin_epoch(0)
    before = copy.deepcopy(algorithm.state_dict())
    losses = algorithm.update(batch)
    assert all(math.isfinite(float(v)) for v in losses.values())
    if algorithm.has_bias_head:
        # csad's bias branch reads pooled features whatever model.bias_head says
        expected = (8, 3, 14, 14) if head == "spatial" and method != "csad" else (8, 3)
        assert algorithm.bias_head(algorithm.features(batch.images)).shape == expected
        assert "bias_loss" in losses
        assert any(not torch.equal(v, before[k]) for k, v in algorithm.state_dict().items() if k.startswith("bias_head"))


@pytest.mark.parametrize("overrides", [["method=baseline"], ["method=lnl", "lnl.step=alternating"],
                                       ["method=lnl", "lnl.step=single_pass"]])
@pytest.mark.parametrize("channels_last", [False, True])
def test_paper_featurizer_shortcut_trains_like_the_plain_layer_stack(overrides, channels_last):
    """Two updates with the featurizer's fast forward (no images' gradient, pooling before ReLU) leave every
    parameter and statistic where the plain Sequential (autograd through the official layer order) does."""
    results = []
    for plain in (False, True):
        _, algorithm, batch = _setup(overrides[0].split("=")[1], *overrides[1:],
                                     f"train.channels_last={str(channels_last).lower()}", "train.precision=fp32")
        algorithm.prepare(torch.device("cpu"))
        with torch.no_grad():  # an input norm that is not the identity, so that its gradients matter
            algorithm.featurizer.layers[0].weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(3))
            algorithm.featurizer.layers[0].bias.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(4))
        if plain:
            algorithm.featurizer.forward = algorithm.featurizer.layers.forward
        algorithm.begin_epoch(0)
        algorithm.train()
        for _ in range(2):
            algorithm.update(batch)
        results.append(algorithm.state_dict())
    fast, plain = results
    assert fast.keys() == plain.keys()
    for name, expected in plain.items():
        if expected.is_floating_point():
            torch.testing.assert_close(fast[name], expected, rtol=1e-4, atol=1e-5, msg=name)  # float rounding
        else:
            assert torch.equal(fast[name], expected), name


@pytest.mark.parametrize("step", ["alternating", "single_pass"])
def test_lnl_probe_without_its_own_terms_trains_f_g_and_h_exactly_like_lnl(step):
    """With lnl_probe.lambda=0 and grl_scale=0 the probe head is trained but nothing of it reaches f: every
    parameter of f, g and h moves as plain LNL's from the same weights and batch."""
    _, lnl, batch = _setup("lnl", f"lnl.step={step}")
    _, probed, _ = _setup("lnl_probe", f"lnl.step={step}", "lnl_probe.lambda=0", "lnl_probe.grl_scale=0")
    missing, unexpected = probed.load_state_dict(lnl.state_dict(), strict=False)
    assert not unexpected and all(key.startswith("probe_head") for key in missing)
    for algorithm in (lnl, probed):
        algorithm.begin_epoch(0)
        algorithm.update(batch)
    probed_state = probed.state_dict()
    assert all(torch.equal(value, probed_state[key]) for key, value in lnl.state_dict().items())


def test_lnl_probe_trains_its_linear_head_on_the_probed_view_and_moves_f_by_its_entropy():
    config, algorithm, batch = _setup("lnl_probe", "lnl_probe.head_steps=3")
    features = algorithm.features(batch.images)
    assert algorithm.probe_head.linear.in_features == features[0].numel()  # f's whole map, as probe-bias reads it
    assert algorithm.probe_head(features).shape == (32, 10)
    heads = []
    for steps in (1, 3):
        _, probed, _ = _setup("lnl_probe", f"lnl_probe.head_steps={steps}", "lnl_probe.lambda=0")
        probed.load_state_dict(algorithm.state_dict())
        probed.begin_epoch(0)
        losses = probed.update(batch)
        assert set(losses) == {"label_loss", "neg_entropy", "bias_loss", "probe_loss"}
        heads.append(probed.probe_head.linear.weight.detach().clone())
    assert not torch.equal(heads[0], algorithm.probe_head.linear.weight)
    assert not torch.equal(heads[0], heads[1])  # three steps go further than one
    featurizers = []
    for weight in (0.0, 1.0):
        _, probed, _ = _setup("lnl_probe", f"lnl_probe.lambda={weight}")
        probed.load_state_dict(algorithm.state_dict())
        probed.begin_epoch(0)
        probed.update(batch)
        featurizers.append(torch.cat([p.detach().flatten() for p in probed.featurizer.parameters()]))
    assert not torch.equal(*featurizers)  # the probe's entropy reaches f


def test_lnl_probe_warm_up_leaves_its_head_untouched_and_its_checkpoint_loads():
    config, algorithm, batch = _setup("lnl_probe", "train.pretrain_epochs=1")
    before = copy.deepcopy(algorithm.probe_head.state_dict())
    assert algorithm.begin_epoch(0) == "warm-up"
    assert set(algorithm.update(batch)) == {"label_loss"}
    assert all(torch.equal(v, algorithm.probe_head.state_dict()[k]) for k, v in before.items())
    clone = build_algorithm(config, TaskSpec(10, 10, 8))
    clone.load_state_dict(algorithm.state_dict())  # sized from the config's image size, not from a batch
    clone.load_optimizer_state(algorithm.optimizer_state())
