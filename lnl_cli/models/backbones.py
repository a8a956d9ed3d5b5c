"""Backbones split into f (feature extractor) and g (label classifier) at a named layer.

Each backbone is a :class:`BackboneSpec` that owns its facts (where it can be split, where it is split
by default, whether it takes a weights file); ``BACKBONES`` in :mod:`lnl_cli.models` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from lnl_cli.data.images import RGB_CHANNELS
from lnl_cli.errors import ConfigError
from lnl_cli.fileio import expand_path
from lnl_cli.models.convnet import FeatureExtractor, LabelClassifier, init_paper_weights

RESNET_HEAD = "fc."  # the ImageNet classifier of a pretrained state_dict; replaced by our own g's


@dataclass(frozen=True)
class StagedLayout:
    """Where a torchvision classifier's modules sit: a stem, named stages (the places it can be split),
    modules after the last stage and before global pooling (`tail`), then its classifier `fc`."""

    stem: tuple[str, ...]
    stages: tuple[str, ...]
    tail: tuple[str, ...] = ()


RESNET_LAYOUT = StagedLayout(stem=("conv1", "bn1", "relu", "maxpool"), stages=("layer1", "layer2", "layer3", "layer4"))
# ShuffleNet V2 (Ma et al., ECCV 2018): a tenth of ResNet-18's arithmetic at x0.5, for photos on small CPUs.
SHUFFLENET_LAYOUT = StagedLayout(stem=("conv1", "maxpool"), stages=("stage2", "stage3", "stage4"), tail=("conv5",))
CHANNEL_PROBE_SIZE = 64  # side of the dummy image that measures a stage's output channels


@dataclass(frozen=True)
class BackboneSpec:
    """A network that splits into (f, g) at one of `feature_layers`.

    `build(num_classes, in_channels, feature_layer, weights_file)` returns (f, g); f has
    ``out_channels``. `keeps_image_grid`: f's features are a map aligned with the input pixels
    (what the paper's per-pixel colour heads need)."""

    summary: str
    build: Callable[[int, int, str, "str | None"], tuple[nn.Module, nn.Module]]
    feature_layers: tuple[str, ...]
    default_feature_layer: str
    takes_weights_file: bool = False
    keeps_image_grid: bool = False


def _output_channels(layers: nn.Sequential, in_channels: int) -> int:
    """Channels `layers` put out, measured on a dummy image (a ShuffleNet stage concatenates two branches,
    so no single layer's width says it); BatchNorm statistics are left untouched."""
    was_training = layers.training
    layers.eval()
    with torch.no_grad():
        channels = layers(torch.zeros(1, in_channels, CHANNEL_PROBE_SIZE, CHANNEL_PROBE_SIZE)).shape[1]
    layers.train(was_training)
    return int(channels)


class StagedFeatures(nn.Module):
    """f: the stem and stages up to and including `last_stage`."""

    def __init__(self, network: nn.Module, layout: StagedLayout, last_stage: str, in_channels: int):
        super().__init__()
        stages = layout.stages[:layout.stages.index(last_stage) + 1]
        self.layers = nn.Sequential(*(getattr(network, name) for name in (*layout.stem, *stages)))
        self.out_channels = _output_channels(self.layers, in_channels)

    def forward(self, x):
        return self.layers(x)


class StagedClassifier(nn.Module):
    """g: the remaining stages and tail, global average pooling and a new fc; `layers[:-1]` is the embedding."""

    def __init__(self, network: nn.Module, layout: StagedLayout, last_stage: str, num_classes: int):
        super().__init__()
        stages = layout.stages[layout.stages.index(last_stage) + 1:]
        width = network.fc.in_features
        self.layers = nn.Sequential(*(getattr(network, name) for name in (*stages, *layout.tail)),
                                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, features):
        return self.layers(features)


def load_pretrained(resnet: nn.Module, path: str) -> None:
    """Weights from a local torchvision state_dict file; its ImageNet fc is dropped (g has its own)."""
    file = expand_path(path)
    if not file.is_file():
        raise ConfigError(f"model.pretrained: weights file not found: {file}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated or pickled objects: all the file's fault
        raise ConfigError(f"model.pretrained: cannot read {file} as a state_dict ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"model.pretrained: {file} does not hold a state_dict")
    state = {str(k).removeprefix("module."): v for k, v in state.items() if not str(k).startswith(RESNET_HEAD)}
    try:
        missing, unexpected = resnet.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ConfigError(f"model.pretrained: {file} does not fit {type(resnet).__name__}: "
                          f"{str(exc).splitlines()[0][:160]}") from None
    missing = [k for k in missing if not k.startswith(RESNET_HEAD)]
    if missing or unexpected:
        raise ConfigError(f"model.pretrained: {file} does not match the backbone "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def _paper_convnet(num_classes: int, in_channels: int, feature_layer: str,
                   weights_file: str | None) -> tuple[nn.Module, nn.Module]:
    featurizer = FeatureExtractor(in_channels)
    classifier = LabelClassifier(num_classes, featurizer.out_channels)
    init_paper_weights(featurizer)
    init_paper_weights(classifier)
    return featurizer, classifier


def _torchvision_network(name: str, layout: StagedLayout):
    def build(num_classes: int, in_channels: int, feature_layer: str,
              weights_file: str | None) -> tuple[nn.Module, nn.Module]:
        import torchvision.models

        network = getattr(torchvision.models, name)(weights=None)
        if in_channels != RGB_CHANNELS:
            raise ConfigError(f"model.backbone: {name} takes RGB images, the data has {in_channels} channels")
        if weights_file:
            load_pretrained(network, weights_file)
        return (StagedFeatures(network, layout, feature_layer, in_channels),
                StagedClassifier(network, layout, feature_layer, num_classes))

    return build


PAPER_CONVNET = BackboneSpec("the paper's Colored-MNIST convnet", _paper_convnet, feature_layers=("conv2",),
                             default_feature_layer="conv2", keeps_image_grid=True)


def resnet(name: str) -> BackboneSpec:
    """A torchvision ResNet, split after a stage (layer3 by default), optionally from a local weights file."""
    return BackboneSpec(f"torchvision {name}", _torchvision_network(name, RESNET_LAYOUT),
                        feature_layers=RESNET_LAYOUT.stages, default_feature_layer="layer3", takes_weights_file=True)


def shufflenet(name: str) -> BackboneSpec:
    """A torchvision ShuffleNet V2, split after a stage (stage3 by default, ResNet's layer3), optionally from
    a local weights file."""
    return BackboneSpec(f"torchvision {name}", _torchvision_network(name, SHUFFLENET_LAYOUT),
                        feature_layers=SHUFFLENET_LAYOUT.stages, default_feature_layer="stage3",
                        takes_weights_file=True)
