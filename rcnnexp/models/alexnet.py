"""AlexNet as Caffe's ``bvlc_alexnet`` (the C-RNN paper's baseline, Zuo et al. 2015):

    conv1 96 11x11/4 -> ReLU -> LRN -> max-pool 3x3/2
    conv2 256 5x5 pad 2, groups 2 -> ReLU -> LRN -> max-pool 3x3/2
    conv3 384 3x3 pad 1 -> ReLU
    conv4 384 3x3 pad 1, groups 2 -> ReLU
    conv5 256 3x3 pad 1, groups 2 -> ReLU -> max-pool 3x3/2     (227x227 in: 256x6x6)
    fc6 4096 -> ReLU -> dropout 0.5
    fc7 4096 -> ReLU -> dropout 0.5
    fc8 N (the classifier)

60,965,224 parameters for 1,000 classes at 227x227. conv1-5 (:class:`AlexNetFeatures`) and
fc6-7 (:func:`fc_layers`) are shared with C-RNN, which puts its RNN between them.

As in Caffe: LRN over 5 channels, alpha 1e-4, beta 0.75, k 1 (Caffe divides alpha by the
window size, as ``nn.LocalResponseNorm`` does); pooling rounds its output size up
(``ceil_mode``), which changes nothing at 227x227 and makes 55x55 the smallest input with a
conv5 grid of at least 1x1 (floor rounding, as torchvision's AlexNet, would need 67x67);
weights start from Caffe's Gaussians (std 0.01, fc6/fc7 0.005) with biases 0 (conv1, conv3,
fc8) or 0.1 (conv2, conv4, conv5, fc6, fc7), as in bvlc_alexnet's train_val.prototxt.
``channels``, ``groups`` and ``fc`` only change widths (small models for tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rcnnexp.models.arguments import alexnet_channels
from rcnnexp.models.base import ImageClassifier
from rcnnexp.models.layers.lrn import LocalResponseNorm


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)  # Caffe rounds pooled sizes up


def _lrn() -> LocalResponseNorm:
    """Caffe's LRN, in the autocast dtype (layers/lrn.py)."""
    return LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


class AlexNetFeatures(nn.Sequential):
    """conv1 .. pool5 of bvlc_alexnet: ``[N, C, H, W]`` -> ``[N, channels[4], h, w]``."""

    def __init__(self, in_channels: int, *, channels: Sequence[int], groups: int) -> None:
        c1, c2, c3, c4, c5 = alexnet_channels(channels, groups)
        super().__init__()
        self.add_module("conv1", nn.Conv2d(in_channels, c1, 11, stride=4))
        self.add_module("relu1", nn.ReLU(inplace=True))
        self.add_module("norm1", _lrn())
        self.add_module("pool1", _pool())
        self.add_module("conv2", nn.Conv2d(c1, c2, 5, padding=2, groups=groups))
        self.add_module("relu2", nn.ReLU(inplace=True))
        self.add_module("norm2", _lrn())
        self.add_module("pool2", _pool())
        self.add_module("conv3", nn.Conv2d(c2, c3, 3, padding=1))
        self.add_module("relu3", nn.ReLU(inplace=True))
        self.add_module("conv4", nn.Conv2d(c3, c4, 3, padding=1, groups=groups))
        self.add_module("relu4", nn.ReLU(inplace=True))
        self.add_module("conv5", nn.Conv2d(c4, c5, 3, padding=1, groups=groups))
        self.add_module("relu5", nn.ReLU(inplace=True))
        self.add_module("pool5", _pool())
        for name, bias in (("conv1", 0.0), ("conv2", 0.1), ("conv3", 0.0), ("conv4", 0.1),
                           ("conv5", 0.1)):
            conv = getattr(self, name)
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias, bias)

    @staticmethod
    def grid_side(size: int) -> int:
        """conv5's output side for an input side ``size`` (0: too small for some layer)."""
        side = (size - 11) // 4 + 1 if size >= 11 else 0  # conv1; conv2-5 keep the size
        for _ in range(3):  # pool1, pool2, pool5: every window must start inside its input
            side = math.ceil((side - 3) / 2) + 1 if side >= 3 else 0
        return side

    @classmethod
    def grid(cls, model: str, image_size: Sequence[int]) -> tuple[int, int]:
        """conv5's grid (h, w) for ``image_size``, or a ValueError naming the smallest input."""
        h, w = (int(s) for s in image_size)
        grid = cls.grid_side(h), cls.grid_side(w)
        if min(grid) < 1:
            smallest = next(s for s in range(11, 1000) if cls.grid_side(s) >= 1)
            raise ValueError(f"{model} needs inputs of at least {smallest}x{smallest} "
                             f"(conv5 grid >= 1x1), got {h}x{w}")
        return grid


def fc_layers(in_features: int, width: int, dropout: float) -> nn.Sequential:
    """fc6 and fc7: two fully connected layers of ``width`` units, each ReLU + dropout."""
    fc = nn.Sequential()
    fc.add_module("fc6", nn.Linear(in_features, width))
    fc.add_module("relu6", nn.ReLU(inplace=True))
    fc.add_module("drop6", nn.Dropout(dropout))
    fc.add_module("fc7", nn.Linear(width, width))
    fc.add_module("relu7", nn.ReLU(inplace=True))
    fc.add_module("drop7", nn.Dropout(dropout))
    for layer in (fc.fc6, fc.fc7):
        nn.init.normal_(layer.weight, std=0.005)
        nn.init.constant_(layer.bias, 0.1)
    return fc


def classifier_layer(width: int, num_classes: int) -> nn.Linear:
    """fc8: the N-way classifier (Caffe: std 0.01, bias 0)."""
    layer = nn.Linear(width, num_classes)
    nn.init.normal_(layer.weight, std=0.01)
    nn.init.zeros_(layer.bias)
    return layer


class AlexNet(ImageClassifier):
    """Parts: ``features`` (conv1-5), ``fc`` (fc6-7), ``classifier`` (fc8). Built with the
    dataset's shape and ``model.*`` (AlexNetConfig holds every default)."""

    def __init__(self, *, in_channels: int, num_classes: int, image_size: Sequence[int],
                 channels: Sequence[int], groups: int, fc: int, dropout: float) -> None:
        super().__init__()
        grid = AlexNetFeatures.grid("AlexNet", image_size)
        self.features = AlexNetFeatures(in_channels, channels=channels, groups=groups)
        self.fc = fc_layers(channels[4] * grid[0] * grid[1], fc, dropout)
        self.classifier = classifier_layer(fc, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.fc(torch.flatten(x, 1))  # fc6's inputs in (channel, row, column) order
        return self.classifier(x)


__all__ = ["AlexNet", "AlexNetFeatures", "classifier_layer", "fc_layers"]
