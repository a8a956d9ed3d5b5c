"""Backbones and heads: ResNet and ShuffleNet splits, training steps, pretrained weights."""

from __future__ import annotations

import math

import pytest
import torch

from lnl_cli import load_config
from lnl_cli.algorithms import TaskSpec, build_algorithm
from lnl_cli.models import BACKBONES
from lnl_cli.errors import ConfigError

from helpers import image_batch as _image_batch

FEATURE_LAYERS = {name: spec.feature_layers for name, spec in BACKBONES.items()}


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_resnet_backbones_split_where_feature_layer_says(backbone):
    images = torch.randn(2, 3, 64, 64)
    for layer, (channels, side) in zip(FEATURE_LAYERS[backbone], [(64, 16), (128, 8), (256, 4), (512, 2)]):
        config = load_config(None, [f"model.backbone={backbone}", f"model.feature_layer={layer}",
                                    "data.type=manifest", "data.train=a", "data.test=b", "method=lnl"])
        algorithm = build_algorithm(config, TaskSpec(5, 2, 0)).eval()
        expansion = 4 if backbone == "resnet50" else 1
        features = algorithm.features(images)
        assert features.shape == (2, channels * expansion, side, side)
        assert algorithm.classifier(features).shape == (2, 5)
        assert algorithm.bias_head(features).shape == (2, 2)


def test_resnet18_lnl_trains_a_few_steps_on_64px_images_and_round_trips(tmp_path):
    config = load_config(None, ["model.backbone=resnet18", "data.type=manifest", "data.train=a", "data.test=b",
                                "method=lnl", "train.pretrain_epochs=0", "train.precision=fp32"])
    torch.manual_seed(0)
    algorithm = build_algorithm(config, TaskSpec(2, 3, 0))
    algorithm.begin_epoch(0)
    batch = _image_batch()
    for _ in range(3):
        losses = algorithm.update(batch)
    assert set(losses) == {"label_loss", "neg_entropy", "bias_loss"}
    assert all(math.isfinite(float(v)) for v in losses.values())
    clone = build_algorithm(config, TaskSpec(2, 3, 0), load_pretrained=False)
    clone.load_state_dict(algorithm.state_dict())
    algorithm.eval(), clone.eval()
    assert torch.equal(clone.predict(batch.images), algorithm.predict(batch.images))


@pytest.mark.parametrize("backbone, widths", [("shufflenet_v2_x0_5", (48, 96, 192)),
                                              ("shufflenet_v2_x1_0", (116, 232, 464))])
def test_shufflenet_backbones_split_at_each_stage_and_take_their_torchvision_weights(tmp_path, backbone, widths):
    """A stage concatenates two branches, so f's width is measured, not read off a layer: each split's
    features must have the width the bias head was built for, and a torchvision state_dict must load."""
    import torchvision

    source = getattr(torchvision.models, backbone)(weights=None)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    images = torch.randn(2, 3, 64, 64)
    for layer, channels, side in zip(FEATURE_LAYERS[backbone], widths, (8, 4, 2)):
        config = load_config(None, [f"model.backbone={backbone}", f"model.feature_layer={layer}",
                                    "data.type=manifest", "data.train=a", "data.test=b", "method=lnl",
                                    f"model.pretrained={tmp_path / 'weights.pth'}"])
        algorithm = build_algorithm(config, TaskSpec(5, 2, 0)).eval()
        features = algorithm.features(images)
        assert features.shape == (2, channels, side, side)
        assert algorithm.classifier(features).shape == (2, 5)
        assert algorithm.bias_head(features).shape == (2, 2)
        assert torch.equal(algorithm.featurizer.layers[0][0].weight, source.conv1[0].weight)


def test_pretrained_weights_load_from_a_local_file_without_the_imagenet_head(tmp_path):
    import torchvision

    source = torchvision.models.resnet18(weights=None)
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    overrides = ["model.backbone=resnet18", "data.type=manifest", "data.train=a", "data.test=b",
                 f"model.pretrained={tmp_path / 'r18.pth'}"]
    algorithm = build_algorithm(load_config(None, overrides), TaskSpec(7, 2, 0))
    assert torch.equal(algorithm.featurizer.layers[0].weight, source.conv1.weight)
    assert torch.equal(algorithm.classifier.layers[0][0].conv1.weight, source.layer4[0].conv1.weight)
    assert algorithm.classifier.layers[-1].out_features == 7
    with pytest.raises(ConfigError, match="does not match the backbone"):
        build_algorithm(load_config(None, [*overrides, "model.backbone=resnet34"]), TaskSpec(7, 2, 0))
    with pytest.raises(ConfigError, match="weights file not found"):
        build_algorithm(load_config(None, [*overrides[:-1], "model.pretrained=/no/such.pth"]), TaskSpec(7, 2, 0))
    # A checkpoint carries the weights: restoring does not read the file.
    build_algorithm(load_config(None, [*overrides[:-1], "model.pretrained=/no/such.pth"]), TaskSpec(7, 2, 0),
                    load_pretrained=False)


def _paper_featurizer(seed: int = 0):
    from lnl_cli.models import FeatureExtractor, init_paper_weights

    torch.manual_seed(seed)
    featurizer = FeatureExtractor()
    init_paper_weights(featurizer)
    with torch.no_grad():  # a trained-looking input norm, so that gamma and beta both matter
        featurizer.layers[0].weight.uniform_(0.5, 1.5)
        featurizer.layers[0].bias.uniform_(-0.5, 0.5)
    return featurizer


@pytest.mark.parametrize("channels_last", [False, True])
def test_paper_featurizer_matches_its_plain_layer_stack_in_values_gradients_and_statistics(channels_last):
    """forward() skips the images' gradient through the input batch norm and pools before the ReLU; the
    plain Sequential (the official order, autograd's gradients) must give the same everything."""
    import copy

    fast = _paper_featurizer()
    plain = copy.deepcopy(fast)
    images = torch.rand(16, 3, 28, 28, generator=torch.Generator().manual_seed(1)) * 4 - 2
    if channels_last:
        fast, plain = fast.to(memory_format=torch.channels_last), plain.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(16, 32, 14, 14, generator=torch.Generator().manual_seed(2))
    for _ in range(2):  # twice: the running statistics accumulate alike
        out, expected = fast(images), plain.layers(images)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        (out * upstream).sum().backward()
        (expected * upstream).sum().backward()
    for (name, p), (_, q) in zip(fast.named_parameters(), plain.named_parameters()):  # float rounding only
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5 * float(q.grad.abs().max()), msg=name)
    for (name, b), (_, c) in zip(fast.named_buffers(), plain.named_buffers()):
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6, msg=name)
    assert int(fast.layers[0].num_batches_tracked) == 2


def test_paper_featurizer_falls_back_to_autograd_where_its_shortcut_does_not_apply():
    from lnl_cli.models.input_norm_conv import fits

    featurizer = _paper_featurizer()
    norm, conv = featurizer.layers[0], featurizer.layers[1]
    images = torch.rand(4, 3, 28, 28)
    assert fits(norm, conv, images)
    assert not fits(norm, conv, images.clone().requires_grad_(True))  # an input gradient is wanted
    with torch.no_grad():
        assert not fits(norm, conv, images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fits(norm, conv, images)
    featurizer.eval()
    assert not fits(norm, conv, images)
    featurizer.train()
    wanted = images.clone().requires_grad_(True)
    featurizer(wanted).sum().backward()
    reference = images.clone().requires_grad_(True)
    _paper_featurizer().layers(reference).sum().backward()
    torch.testing.assert_close(wanted.grad, reference.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_paper_featurizer_input_norm_statistics_follow_batchnorm_for_any_momentum(momentum):
    import copy

    fast = _paper_featurizer()
    fast.layers[0].momentum = momentum
    plain = copy.deepcopy(fast)
    for step in range(3):
        images = torch.rand(8, 3, 28, 28, generator=torch.Generator().manual_seed(step)) * 2
        fast(images).sum().backward()
        plain.layers(images).sum().backward()
    for (name, b), (_, c) in zip(fast.layers[0].named_buffers(), plain.layers[0].named_buffers()):
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6, msg=name)
    assert int(fast.layers[0].num_batches_tracked) == 3
