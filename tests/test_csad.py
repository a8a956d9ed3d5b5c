"""CSAD (method=csad): its phases, losses, gradients, targets, estimator, resume and config errors, on tiny data."""

import copy
import math

import pytest
import torch

from lnl_cli import api, engine, load_config
from lnl_cli.algorithms import TaskSpec, build_algorithm
from lnl_cli.algorithms.csad import LOG_FLOOR, image_color_bins
from lnl_cli.checkpoint import load_checkpoint
from lnl_cli.data.base import IGNORE_INDEX, iterate_batches
from lnl_cli.errors import ConfigError, TrainingInterrupted

from helpers import image_batch, tiny_dataset

# One epoch of each phase: cross-entropy warm-up, bias-branch warm-up, estimator warm-up, game.
PHASED = ["method=csad", "train.pretrain_epochs=1", "csad.bias_warmup_epochs=1", "csad.mi_warmup_epochs=1",
          "train.precision=fp32"]
NETWORKS = ("featurizer", "classifier", "bias_head", "estimator")


def _setup(*overrides, seed=0):
    config = load_config("colored-mnist", [*PHASED, *overrides])
    dataset = tiny_dataset()
    torch.manual_seed(seed)
    algorithm = build_algorithm(config, TaskSpec(10, 10, 8))
    batch = next(iterate_batches(dataset.train, 32, dataset.mean, dataset.std, torch.Generator().manual_seed(0)))
    return config, algorithm, batch


def _parameters(algorithm, network):
    return {n: p.detach().clone() for n, p in getattr(algorithm, network).named_parameters()}


def _moved(algorithm, before):
    """The networks whose parameters (not BatchNorm statistics) changed since `before`."""
    return {network for network in NETWORKS
            if any(not torch.equal(p, before[network][n]) for n, p in getattr(algorithm, network).named_parameters())}


@pytest.mark.slow
def test_each_phase_reports_its_losses_and_trains_only_its_networks():
    _, algorithm, batch = _setup()
    expected = [("warm-up", {"label_loss"}, {"featurizer", "classifier"}),
                ("bias-warm-up", {"bias_loss"}, {"bias_head"}),
                ("mi-warm-up", {"mi_loss"}, {"estimator"}),
                ("adversarial", {"label_loss", "bias_loss", "mi_loss"}, set(NETWORKS))]
    for epoch, (phase, keys, trained) in enumerate(expected):
        assert algorithm.begin_epoch(epoch) == phase
        before = {network: _parameters(algorithm, network) for network in NETWORKS}
        losses = algorithm.update(batch)
        assert set(losses) == keys, phase
        assert all(math.isfinite(float(v)) for v in losses.values()), phase
        assert _moved(algorithm, before) == trained, phase
    assert algorithm.first_adversarial_epoch() == 3


@pytest.mark.slow
def test_the_game_gives_f_minus_lambda_times_the_estimator_gradient_and_nothing_to_g():
    """Step 4: f's gradient is -lambda * dL/df of the estimator's loss L (gradient ascent on what the
    estimator tells); g, the bias branch and the estimator get nothing from it."""
    for weight in (0.5, 2.0):
        _, algorithm, batch = _setup(f"csad.lambda={weight}")
        algorithm.begin_epoch(3)
        algorithm.optimizer.step = lambda: None  # f and g keep their weights: the gradients can be read
        algorithm.update(batch)
        game = {n: p.grad.clone() for n, p in algorithm.featurizer.named_parameters()}
        assert all(p.grad is None for p in algorithm.classifier.parameters())
        targets = algorithm.bias_targets(batch)
        algorithm.zero_grad(set_to_none=True)
        z_t, z_b = algorithm._branch_features(batch.images)
        algorithm.estimator(z_t, z_b, algorithm.same_bias(batch, targets)).backward()
        for name, p in algorithm.featurizer.named_parameters():
            assert torch.allclose(game[name], -weight * p.grad, rtol=1e-4, atol=1e-7), name
        assert any(p.grad.abs().sum() > 0 for p in algorithm.featurizer.parameters())


def test_the_adversarial_step_raises_the_estimators_loss_and_the_estimator_lowers_it():
    """With plain SGD, f's adversarial update makes the (fixed) estimator's loss higher; the estimator's own
    updates on fixed features make it lower."""
    _, algorithm, batch = _setup("train.optimizer=sgd", "train.momentum=0", "train.weight_decay=0",
                                 "train.adversarial_lr=0.01")
    algorithm.begin_epoch(3)
    targets = algorithm.bias_targets(batch)
    same = algorithm.same_bias(batch, targets)
    with torch.no_grad():
        z_t, z_b = algorithm._branch_features(batch.images)
    first = float(algorithm.estimator(z_t, z_b, same).detach())
    fitted = float(algorithm._fit_estimator(z_t, z_b, same, 20))
    assert fitted < first

    algorithm.optimizer.zero_grad(set_to_none=True)
    z_t, z_b = algorithm._branch_features(batch.images)
    loss = algorithm.estimator(z_t, z_b, same)
    torch.autograd.backward(-loss, inputs=list(algorithm.featurizer.parameters()))
    algorithm._step(algorithm.optimizer)
    with torch.no_grad():
        after = float(algorithm.estimator(*algorithm._branch_features(batch.images), same))
    assert after > float(loss.detach())


def test_the_bias_branch_learns_the_colour_bins_on_fixed_features():
    _, algorithm, batch = _setup()
    algorithm.begin_epoch(1)
    losses = [float(algorithm.update(batch)["bias_loss"]) for _ in range(15)]
    assert losses[-1] < losses[0]
    logits = algorithm.bias_head(algorithm.features(batch.images))
    assert logits.shape == (32, 8, 3)  # 8 bins per RGB channel, as the official three heads


def test_image_colour_bins_average_each_channels_valid_pixels():
    ignore = IGNORE_INDEX
    pixels = torch.tensor([[[[1, 2], [ignore, ignore]],      # red: (1 + 2) / 2 -> 1
                            [[5, 6], [7, ignore]],            # green: 18 / 3 -> 6
                            [[ignore, ignore], [ignore, ignore]]]])  # blue zero everywhere -> bin 0
    assert image_color_bins(pixels).tolist() == [[1, 6, 0]]


def test_pairs_share_the_bias_below_the_squared_colour_distance_or_with_the_same_class():
    _, algorithm, batch = _setup()
    bins = torch.tensor([[0, 0, 0], [1, 1, 1], [2, 0, 0], [0, 0, 1]])
    same = algorithm.same_bias(batch, bins)
    assert same[0].tolist() == [True, True, False, True]  # squared distances 0, 3, 4, 1 against 4
    assert same.equal(same.T) and same.diagonal().all()
    config = load_config(None, ["method=csad", "data.type=manifest", "data.train=a.csv", "data.test=b.csv"])
    classes = build_algorithm(config, TaskSpec(2, 3, 0))
    assert classes.target_kind == "class"
    bias = torch.tensor([0, 2, 0, 1])
    assert classes.same_bias(batch, bias).equal(bias[:, None] == bias[None, :])


def _official_loss(estimator, z_t, z_b, same):
    """The official MI loss (zwvews/csad models.py), written plainly: an inverse, boolean selections and
    log(1 + sum exp), to check the stable form against."""
    u = torch.nn.functional.normalize(estimator.target(z_t))
    v = torch.nn.functional.normalize(estimator.bias(z_b))
    c = estimator.propagation

    def graph(x, t):
        a = torch.softmax(t * x @ x.T, dim=1)
        a = (a + a.T) / 2
        walk = (1 - c) * torch.inverse(torch.eye(len(a)) - c * a)
        walk = (walk + walk.T) / 2
        return walk / walk.sum(dim=1, keepdim=True)

    gt, gb = graph(u, estimator.target_temperature), graph(v, estimator.bias_temperature)
    content = u @ v.T
    structural = (gt @ torch.log(gb.T + LOG_FLOOR) + gb @ torch.log(gt.T + LOG_FLOOR)) / 2
    wp, wn = estimator.positive_weight, estimator.negative_weight
    pos, neg = (structural + content)[same], (structural + content)[~same]
    return torch.log(1 + torch.exp(-wp * pos).sum()) / wp + torch.log(1 + torch.exp(wn * neg).sum()) / wn


def test_the_estimators_loss_is_the_official_formula_and_stays_finite_without_negative_pairs():
    _, algorithm, batch = _setup()
    targets = algorithm.bias_targets(batch)
    same = algorithm.same_bias(batch, targets)
    assert same.any() and (~same).any()
    z_t, z_b = algorithm._branch_features(batch.images)
    ours = algorithm.estimator(z_t, z_b, same)
    assert torch.allclose(ours, _official_loss(algorithm.estimator, z_t, z_b, same), rtol=1e-4)
    everyone = torch.ones_like(same)  # a batch in which every image shares the bias: no negatives
    loss = algorithm.estimator(z_t.detach(), z_b.detach(), everyone)
    loss.backward()
    assert math.isfinite(float(loss.detach()))
    assert all(torch.isfinite(p.grad).all() for p in algorithm.estimator.parameters() if p.grad is not None)


def test_learning_rates_follow_the_phases_and_optimizers_restart_with_the_estimators_warm_up():
    config, algorithm, batch = _setup("train.lr=0.1", "train.adversarial_lr=0.01", "csad.bias_warmup_epochs=2",
                                      "train.lr_decay_epochs=1", "train.pretrain_lr_decay_epochs=1",
                                      "train.lr_decay_rate=0.5", "train.epochs=7")
    lrs = []
    for epoch in range(6):  # warm-up 0, bias warm-up 1-2, estimator warm-up 3, game 4-5
        algorithm.begin_epoch(epoch)
        lrs.append({name: opt.param_groups[0]["lr"] for name, opt in algorithm.optimizers().items()})
        if epoch in (0, 1):
            algorithm.update(batch)  # builds optimizer state
    assert [set(lr.values()) for lr in lrs] == [{0.1}, {0.1}, {0.05}, {0.01}, {0.01}, {0.005}]
    assert not algorithm.optimizer.state and not algorithm.bias_optimizer.state  # cleared at epoch 3

    _, resumed, _ = _setup("csad.bias_warmup_epochs=2")
    resumed.begin_epoch(1)
    resumed.update(batch)
    resumed.begin_epoch(3, resumed=True)  # a resumed epoch keeps the saved state
    assert resumed.bias_optimizer.state


@pytest.mark.slow
def test_a_state_round_trip_continues_exactly():
    """Two game steps from a state_dict and optimizer-state copy equal two steps of the original (Adam)."""
    _, algorithm, batch = _setup("train.optimizer=adam", "train.lr=0.001")
    algorithm.begin_epoch(3)
    algorithm.update(batch)
    clone = build_algorithm(algorithm.config, TaskSpec(10, 10, 8))
    clone.load_state_dict(copy.deepcopy(algorithm.state_dict()))
    clone.load_optimizer_state(copy.deepcopy(algorithm.optimizer_state()))
    clone.begin_epoch(3, resumed=True)
    for _ in range(2):
        ours, theirs = algorithm.update(batch), clone.update(batch)
        assert {k: float(v) for k, v in ours.items()} == {k: float(v) for k, v in theirs.items()}
    for name, value in algorithm.state_dict().items():
        assert torch.equal(value, clone.state_dict()[name]), name


class _StopAt(engine.TrainCallbacks):
    def __init__(self, stop, epoch):
        self.stop, self.epoch, self.texts = stop, epoch, []

    def on_epoch_start(self, epoch, epochs, phase, steps):
        if epoch == self.epoch:
            self.stop.request("SIGINT", 130)

    def on_message(self, text):
        self.texts.append(text)


@pytest.fixture
def _tiny_data(monkeypatch):
    monkeypatch.setattr(engine, "load_dataset", lambda config: tiny_dataset(n=48))


@pytest.mark.usefixtures("_tiny_data")
@pytest.mark.slow
def test_an_interrupted_csad_run_resumes_to_the_same_weights(tmp_path):
    config = load_config("colored-mnist", [*PHASED, "train.epochs=4", "train.batch_size=16", "train.num_threads=1",
                                           "train.optimizer=adam", "train.lr=0.001", "csad.bias_steps=2",
                                           "csad.mi_steps=2"])
    api.train(config, tmp_path / "straight")
    stop = engine.StopRequest()
    with pytest.raises(TrainingInterrupted):
        api.train(config, tmp_path / "cut", _StopAt(stop, 3), stop)  # one step into the game
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["partial_epoch"]["step"] == 1
    api.resume(tmp_path / "cut")
    straight, cut = (load_checkpoint(tmp_path / name / "last.pt") for name in ("straight", "cut"))
    assert any(key.startswith("estimator.") for key in straight["model"])
    for key, value in straight["model"].items():
        assert torch.equal(value, cut["model"][key]), key


@pytest.mark.usefixtures("_tiny_data")
def test_a_run_that_never_reaches_the_game_says_so(tmp_path):
    config = load_config("colored-mnist", [*PHASED, "train.epochs=2", "train.batch_size=16", "train.num_threads=1"])
    callbacks = _StopAt(engine.StopRequest(), -1)
    api.train(config, tmp_path / "run", callbacks)
    assert any("csad.bias_warmup_epochs" in text and "never reaches the adversarial phase" in text
               for text in callbacks.texts)


@pytest.mark.parametrize("backbone", ["resnet18", "shufflenet_v2_x0_5"])
def test_the_game_runs_on_photo_backbones_with_a_bias_class(backbone):
    config = load_config(None, ["method=csad", "data.type=manifest", "data.train=a.csv", "data.test=b.csv",
                                f"model.backbone={backbone}", "train.precision=fp32", "csad.bias_warmup_epochs=0",
                                "csad.mi_warmup_epochs=0", "csad.bias_steps=2", "csad.mi_steps=2"])
    torch.manual_seed(0)
    algorithm = build_algorithm(config, TaskSpec(2, 3, 0))
    batch = image_batch(size=32)
    assert algorithm.begin_epoch(0) == "adversarial"
    before = {network: _parameters(algorithm, network) for network in NETWORKS}
    losses = algorithm.update(batch)
    assert set(losses) == {"label_loss", "bias_loss", "mi_loss"}
    assert all(math.isfinite(float(v)) for v in losses.values())
    assert _moved(algorithm, before) == set(NETWORKS)
    assert algorithm.bias_head(algorithm.features(batch.images)).shape == (8, 3)


@pytest.mark.parametrize("override, message", [
    ("csad.lamda=1", "unknown key 'csad.lamda' (from override) (did you mean 'csad.lambda'?)"),
    ("csad.propagation=1", "csad.propagation (from override): must be < 1.0, got 1"),
    ("csad.mi_steps=0", "csad.mi_steps (from override): must be >= 1, got 0"),
    ("csad.bias_target=pixels", "csad.bias_target (from override): expected one of 'auto' | 'color_bins' | 'class'"),
])
def test_a_bad_csad_key_is_a_one_line_config_error(override, message):
    with pytest.raises(ConfigError) as raised:
        load_config("colored-mnist", ["method=csad", override])
    text = str(raised.value)
    assert message in text and "\n" not in text


def test_colour_targets_need_data_with_per_pixel_colours():
    with pytest.raises(ConfigError, match="csad.bias_target: color_bins needs per-pixel colour targets"):
        load_config(None, ["method=csad", "data.type=manifest", "data.train=a.csv", "data.test=b.csv",
                           "csad.bias_target=color_bins"])
    load_config(None, ["method=lnl", "data.type=manifest", "data.train=a.csv", "data.test=b.csv",
                       "csad.bias_target=color_bins"])  # only csad reads it
