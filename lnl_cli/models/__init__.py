"""Networks: the feature extractor f, label classifier g and bias predictor h.

``BACKBONES`` is the registry ``model.backbone`` picks from; each entry owns its layer names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from lnl_cli.data import DATASETS
from lnl_cli.models.backbones import PAPER_CONVNET, BackboneSpec, resnet, shufflenet
from lnl_cli.models.convnet import FeatureExtractor, LabelClassifier, init_paper_weights
from lnl_cli.models.heads import (BIAS_HEADS, DEFAULT_CATEGORICAL_HEAD, PIXEL_HEAD, CategoricalBiasHead,
                                  ColorBiasHead)
from lnl_cli.schema import did_you_mean

if TYPE_CHECKING:
    from lnl_cli.config import Config

BACKBONES: dict[str, BackboneSpec] = {
    "paper_convnet": PAPER_CONVNET,
    "resnet18": resnet("resnet18"),
    "resnet34": resnet("resnet34"),
    "resnet50": resnet("resnet50"),
    "shufflenet_v2_x0_5": shufflenet("shufflenet_v2_x0_5"),
    "shufflenet_v2_x1_0": shufflenet("shufflenet_v2_x1_0"),
}


def feature_layer(config: "Config") -> str:
    """model.feature_layer, or the backbone's default."""
    return config.model.feature_layer or BACKBONES[config.model.backbone].default_feature_layer


def pixel_head_fits(config: "Config") -> bool:
    """The paper's per-pixel colour head needs per-pixel bias targets and features on the image grid."""
    return DATASETS[config.data.type].pixel_bias_targets and BACKBONES[config.model.backbone].keeps_image_grid


def bias_head_kind(config: "Config") -> str:
    """model.bias_head with `auto` resolved: the paper's per-pixel colour head where it fits."""
    if config.model.bias_head != "auto":
        return config.model.bias_head
    return PIXEL_HEAD if pixel_head_fits(config) else DEFAULT_CATEGORICAL_HEAD


def build_backbone(config: "Config", num_classes: int, in_channels: int,
                   load_weights: bool = True) -> tuple[nn.Module, nn.Module]:
    """(f, g) for model.backbone, split at model.feature_layer; f has `out_channels`."""
    weights = config.model.pretrained if load_weights else None
    return BACKBONES[config.model.backbone].build(num_classes, in_channels, feature_layer(config), weights)


def check_config(config: "Config") -> list[str]:
    """Problems of the model section against the chosen backbone and dataset."""
    model, problems = config.model, []
    spec = BACKBONES[model.backbone]
    if model.feature_layer is not None and model.feature_layer not in spec.feature_layers:
        problems.append(f"model.feature_layer: {model.backbone} has {', '.join(spec.feature_layers)}, got "
                        f"{model.feature_layer!r}{did_you_mean(model.feature_layer, spec.feature_layers)}")
    if model.bias_head == PIXEL_HEAD and not pixel_head_fits(config):
        fitting = [name for name, data in DATASETS.items() if data.pixel_bias_targets]
        grids = [name for name, backbone in BACKBONES.items() if backbone.keeps_image_grid]
        problems.append(f"model.bias_head: {PIXEL_HEAD} needs data.type={'|'.join(fitting)} and "
                        f"model.backbone={'|'.join(grids)} (use conv or mlp)")
    if model.pretrained is not None and not spec.takes_weights_file:
        problems.append("model.pretrained: weights files are for the torchvision backbones")
    return problems


__all__ = ["BACKBONES", "BIAS_HEADS", "PIXEL_HEAD", "CategoricalBiasHead", "ColorBiasHead", "FeatureExtractor", "LabelClassifier",
           "bias_head_kind", "build_backbone", "check_config", "feature_layer", "init_paper_weights"]
