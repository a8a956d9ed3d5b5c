"""The paper's Colored-MNIST network, split where the official code reads its features."""

from __future__ import annotations

import math

from torch import nn

from lnl_cli.models.input_norm_conv import input_norm_conv

FEATURE_CHANNELS = 32


class FeatureExtractor(nn.Module):
    """f: input BN -> conv5x5 3->32 -> ReLU -> maxpool 3/2 -> conv3x3 32->32 -> ReLU (32 x 14 x 14)."""

    def __init__(self, in_channels: int = 3, channels: int = FEATURE_CHANNELS):
        super().__init__()
        self.layers = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, channels, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.out_channels = channels

    def forward(self, x):
        norm, conv, relu, pool, *rest = self.layers
        x = input_norm_conv(norm, conv, x)  # conv(norm(x)) without the images' gradient
        x = relu(pool(x))  # = pool(relu(x)), values and gradients, on a quarter of the elements
        for layer in rest:
            x = layer(x)
        return x


class LabelClassifier(nn.Module):
    """g: conv3x3/2 32->64 -> ReLU -> conv3x3 64->64 -> ReLU -> global average pool -> fc."""

    def __init__(self, num_classes: int, in_channels: int = FEATURE_CHANNELS, width: int = 64):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, num_classes),
        )

    def forward(self, features):
        return self.layers(features)


def init_paper_weights(module: nn.Module) -> None:
    """The official initialisation: He-normal convs with fan = k*k*out_channels, BN to identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
