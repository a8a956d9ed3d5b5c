"""Backbones split into f (feature extractor) and g (label classifier) at a named layer."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lnl_cli.config import RESNET_STAGES, Config, feature_layer
from lnl_cli.errors import ConfigError
from lnl_cli.models.convnet import FeatureExtractor, LabelClassifier, init_paper_weights

RESNET_HEAD = "fc."  # the ImageNet classifier of a pretrained state_dict; replaced by our own g's


def _stage_channels(stage: nn.Sequential) -> int:
    """Output channels of a ResNet stage: its last block's last batch norm."""
    last = stage[-1]
    norm = getattr(last, "bn3", None) or last.bn2
    return norm.num_features


class ResNetFeatures(nn.Module):
    """f: the ResNet stem and stages up to and including `last_stage`."""

    def __init__(self, resnet: nn.Module, last_stage: str):
        super().__init__()
        stages = RESNET_STAGES[:RESNET_STAGES.index(last_stage) + 1]
        self.layers = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                                    *(getattr(resnet, name) for name in stages))
        self.out_channels = _stage_channels(getattr(resnet, last_stage))

    def forward(self, x):
        return self.layers(x)


class ResNetClassifier(nn.Module):
    """g: the remaining stages, global average pooling and a new fc; `layers[:-1]` is the embedding."""

    def __init__(self, resnet: nn.Module, last_stage: str, num_classes: int):
        super().__init__()
        stages = RESNET_STAGES[RESNET_STAGES.index(last_stage) + 1:]
        width = resnet.fc.in_features
        self.layers = nn.Sequential(*(getattr(resnet, name) for name in stages), nn.AdaptiveAvgPool2d(1),
                                    nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, features):
        return self.layers(features)


def load_pretrained(resnet: nn.Module, path: str) -> None:
    """Weights from a local torchvision state_dict file; its ImageNet fc is dropped (g has its own)."""
    file = Path(path).expanduser()
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
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(RESNET_HEAD)}
    try:
        missing, unexpected = resnet.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ConfigError(f"model.pretrained: {file} does not fit {type(resnet).__name__}: "
                          f"{str(exc).splitlines()[0][:160]}") from None
    missing = [k for k in missing if not k.startswith(RESNET_HEAD)]
    if missing or unexpected:
        raise ConfigError(f"model.pretrained: {file} does not match the backbone "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def build_backbone(config: Config, num_classes: int, in_channels: int,
                   load_weights: bool = True) -> tuple[nn.Module, nn.Module]:
    """(f, g) for model.backbone, split at model.feature_layer; f has `out_channels`."""
    backbone = config.model.backbone
    if backbone == "paper_convnet":
        featurizer = FeatureExtractor(in_channels)
        classifier = LabelClassifier(num_classes, featurizer.out_channels)
        init_paper_weights(featurizer)
        init_paper_weights(classifier)
        return featurizer, classifier
    import torchvision.models

    resnet = getattr(torchvision.models, backbone)(weights=None)
    if in_channels != resnet.conv1.in_channels:
        raise ConfigError(f"model.backbone: {backbone} takes RGB images, the data has {in_channels} channels")
    if load_weights and config.model.pretrained:
        load_pretrained(resnet, config.model.pretrained)
    stage = feature_layer(config)
    return ResNetFeatures(resnet, stage), ResNetClassifier(resnet, stage, num_classes)
