"""Bias heads h: the paper's per-pixel colour heads (Colored-MNIST) and a categorical head for any
bias with one class per image."""

from __future__ import annotations

import torch
from torch import nn

COLOR_CHANNELS = 3
PIXEL_HEAD = "color_pixels"
CATEGORICAL_HEADS = ("conv", "mlp", "spatial")
BIAS_HEADS = (PIXEL_HEAD, *CATEGORICAL_HEADS)
# Widest hidden layer a head may ask for: far above any real head, so that a typo cannot ask torch for an
# impossible size.
MAX_HEAD_WIDTH = 4096
DEFAULT_CATEGORICAL_HEAD = "conv"


class ColorBiasHead(nn.Module):
    """Three heads (conv3x3 -> BN -> ReLU -> conv3x3 to `bins` logits), one per colour channel.

    They are computed as one wide conv and one grouped conv: the same functions as three
    separate modules (batch norm is per channel, groups keep the heads apart), in two kernels
    instead of six.
    """

    num_heads = COLOR_CHANNELS

    def __init__(self, bins: int, in_channels: int = 32, width: int = 32):
        super().__init__()
        self.bins = bins
        heads = COLOR_CHANNELS
        self.hidden = nn.Conv2d(in_channels, heads * width, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(heads * width)
        self.relu = nn.ReLU(inplace=True)
        self.out = nn.Conv2d(heads * width, heads * bins, kernel_size=3, padding=1, groups=heads)

    @staticmethod
    def targets(bias: torch.Tensor, pixel_targets: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
        """What this head predicts: every stroke pixel's colour bin per channel (IGNORE_INDEX elsewhere)."""
        return pixel_targets

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits shaped N x bins x 3 x H x W, so that cross-entropy over dim 1 takes N x 3 x H x W targets."""
        logits = self.out(self.relu(self.norm(self.hidden(features))))
        n, _, height, width = logits.shape
        return logits.view(n, COLOR_CHANNELS, self.bins, height, width).transpose(1, 2)


class CategoricalBiasHead(nn.Module):
    """One bias class per image: conv3x3 -> BN -> ReLU -> global pool -> linear (`conv`), global
    pool -> linear -> ReLU -> linear (`mlp`), both with logits N x classes; or conv3x3 -> BN -> ReLU ->
    conv1x1 predicting the class at every position (`spatial`, logits N x classes x H x W), the
    categorical analogue of the paper's per-pixel colour heads: f must clear the bias from every
    position, not only from the pooled average."""

    num_heads = 1

    def __init__(self, classes: int, in_channels: int, kind: str = "conv", width: int = 128):
        super().__init__()
        if kind in ("conv", "spatial"):
            layers = [nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.BatchNorm2d(width),
                      nn.ReLU(inplace=True)]
            if kind == "conv":
                layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)]
            else:
                layers += [nn.Conv2d(width, classes, kernel_size=1)]
        else:
            layers = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, width), nn.ReLU(inplace=True),
                      nn.Linear(width, classes)]
        self.layers = nn.Sequential(*layers)

    @staticmethod
    def targets(bias: torch.Tensor, pixel_targets: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
        """What this head predicts: the image's bias class, at every position for the spatial head."""
        return bias[:, None, None].expand(-1, *logits.shape[2:]) if logits.dim() == 4 else bias

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)
