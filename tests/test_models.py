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
