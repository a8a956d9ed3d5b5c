"""Networks: the feature extractor f, label classifier g and bias predictor h.

``BACKBONES`` is the registry ``model.backbone`` picks from; each entry owns its layer names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from lnl_cli.data import DATASETS
from lnl_cli.data.images import IMAGENET_MEAN, IMAGENET_STD
from lnl_cli.errors import ConfigError
from lnl_cli.models.backbones import IMAGENET, PAPER_CONVNET, BackboneSpec, resnet, shufflenet
from lnl_cli.models.efficientnet import efficientnet_lite0
from lnl_cli.models.convnet import FeatureExtractor, LabelClassifier, init_paper_weights
from lnl_cli.models.heads import (BIAS_HEADS, DEFAULT_CATEGORICAL_HEAD, PIXEL_HEAD, CategoricalBiasHead,
                                  ColorBiasHead)
from lnl_cli.schema import did_you_mean

if TYPE_CHECKING:
    from lnl_cli.config import Config

NORMALISATION_TOLERANCE = 1e-3  # data.mean/std within this of ImageNet's are ImageNet's (rounded in a preset)

BACKBONES: dict[str, BackboneSpec] = {
    "paper_convnet": PAPER_CONVNET,
    "resnet18": resnet("resnet18"),
    "resnet34": resnet("resnet34"),
    "resnet50": resnet("resnet50"),
    "shufflenet_v2_x0_5": shufflenet("shufflenet_v2_x0_5"),
    "shufflenet_v2_x1_0": shufflenet("shufflenet_v2_x1_0"),
    "efficientnet_lite0": efficientnet_lite0(),
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
    """(f, g) for model.backbone, split at model.feature_layer; f has `out_channels`. The first
    model.frozen_stages stages stop learning whether or not the weights are loaded now (a checkpoint
    restores them), so that a restored run trains the same parameters."""
    weights = config.model.pretrained if load_weights else None
    featurizer, classifier = BACKBONES[config.model.backbone].build(num_classes, in_channels, feature_layer(config),
                                                                    weights)
    frozen = set(BACKBONES[config.model.backbone].stages[:config.model.frozen_stages])
    for network in (featurizer, classifier):
        for stage, module in network.parts() if frozen else ():
            if stage in frozen:
                module.requires_grad_(False)
    return featurizer, classifier


def new_head(classifier: nn.Module) -> nn.Module:
    """g's own classifier, the one layer no pretrained weights set (every backbone's g ends with it)."""
    return classifier.layers[-1]


def parameter_groups(config: "Config", featurizer: nn.Module, classifier: nn.Module) -> list:
    """f and g's parameters for their optimizer: one list, or with model.pretrained and a
    model.pretrained_lr_scale other than 1 two groups, the new head first (the phase's rate: what a
    reader of ``param_groups[0]`` gets) and the pretrained rest with ``lr_scale`` (set_lr applies it)."""
    params = list(featurizer.parameters()) + list(classifier.parameters())
    scale = config.model.pretrained_lr_scale
    if config.model.pretrained is None or scale == 1.0:
        return params
    head = {id(p) for p in new_head(classifier).parameters()}
    return [{"params": [p for p in params if id(p) in head]},
            {"params": [p for p in params if id(p) not in head], "lr_scale": scale}]


def keep_norm_statistics(config: "Config", featurizer: nn.Module, classifier: nn.Module) -> None:
    """After ``train()``: batch norms keep their running statistics (eval mode) where model.bn_eval says
    so (every one of f and g: the new head has none) and in frozen stages (a frozen stage does not change
    at all). Their affine parameters still learn unless frozen."""
    for network in (featurizer, classifier):
        for module in network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and (config.model.bn_eval or _frozen(module)):
                module.eval()


def _frozen(module: nn.Module) -> bool:
    """A module with parameters, none of which learns (model.frozen_stages froze it)."""
    flags = [p.requires_grad for p in module.parameters()]
    return bool(flags) and not any(flags)


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
    return problems + _weights_problems(config, spec) + _fine_tuning_problems(config, spec)


def _weights_problems(config: "Config", spec: BackboneSpec) -> list[str]:
    """model.pretrained: a file for a backbone that takes one; `imagenet` where an installed extra ships
    such weights, with the inputs normalised as ImageNet's were."""
    model, data = config.model, config.data
    if model.pretrained is None:
        return []
    if model.pretrained != IMAGENET:
        return [] if spec.takes_weights_file else ["model.pretrained: weights files are for the torchvision "
                                                   "backbones and efficientnet_lite0"]
    if spec.imagenet is None:
        having = [name for name, other in BACKBONES.items() if other.imagenet is not None]
        instead = " (it takes a local weights file)" if spec.takes_weights_file else ""
        return [f"model.pretrained: {IMAGENET} weights exist for model.backbone={'|'.join(having)}, not "
                f"{model.backbone}{instead}"]
    problems = []
    for key, expected in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        values = getattr(data, key)
        if values and any(abs(v - e) > NORMALISATION_TOLERANCE for v, e in zip(values, expected)):
            problems.append(f"data.{key}: model.pretrained={IMAGENET} needs ImageNet's input normalisation "
                            f"{list(expected)} (leave data.{key} empty), got {values}")
    return problems


def check_weights_installed(config: "Config") -> None:
    """Before a run starts (not in config validation: a checkpoint trained from `imagenet` carries its
    weights and evaluates, exports and resumes without the extra): the extra that ships the weights."""
    spec = BACKBONES[config.model.backbone]
    if config.model.pretrained == IMAGENET and spec.imagenet is not None and (reason := spec.imagenet.missing()):
        raise ConfigError(reason)


def _fine_tuning_problems(config: "Config", spec: BackboneSpec) -> list[str]:
    """The fine-tuning keys act on pretrained weights, within the stages the backbone has."""
    model, problems = config.model, []
    if model.frozen_stages > len(spec.stages):
        having = f"stages {', '.join(spec.stages)}" if spec.stages else "no stages"
        problems.append(f"model.frozen_stages: {model.backbone} has {having}, got {model.frozen_stages}")
    if model.pretrained is None:
        for key, value, default in (("frozen_stages", model.frozen_stages, 0), ("bn_eval", model.bn_eval, False),
                                    ("pretrained_lr_scale", model.pretrained_lr_scale, 1.0)):
            if value != default:
                problems.append(f"model.{key}: acts on pretrained weights; set model.pretrained "
                                f"({IMAGENET} or a weights file) or leave it at {str(default).lower()}")
    return problems


__all__ = ["BACKBONES", "BIAS_HEADS", "IMAGENET", "PIXEL_HEAD", "CategoricalBiasHead", "ColorBiasHead", "FeatureExtractor", "LabelClassifier",
           "bias_head_kind", "build_backbone", "check_config", "check_weights_installed", "feature_layer", "init_paper_weights",
           "keep_norm_statistics", "new_head", "parameter_groups"]
