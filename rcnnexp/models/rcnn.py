"""RCNN-K (Liang & Hu, CVPR 2015), laid out as the paper's architecture:

    conv1 5x5, K maps (+ ReLU, optional LRN)
    max-pool 3x3/2
    RCL(K, T) -> dropout
    RCL(K, T)
    max-pool 3x3/2 -> dropout
    RCL(K, T) -> dropout
    RCL(K, T)
    global max pool -> softmax (linear K -> classes)

Dropout follows every RCL but the last; where an RCL is followed by pooling it comes after
the pool. Not stated by the paper, chosen here: pooling pads by 1 (so 32 -> 16 -> 8), and
conv1 is followed by a ReLU, and the weights start from He initialisation (fan-in, ReLU
gain), an RCL's two convolutions each scaled by 1/sqrt(2) so that their sum has the variance
of one He layer (PyTorch's default init left a digits run at chance for some seeds).
Table 1's baselines come from ``variant``: rCNN (recursive
RCLs) and WCNN (each RCL a plain 3x3 convolution).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rcnnexp.models.base import ImageClassifier
from rcnnexp.models.choices import RCNNVariant
from rcnnexp.models.layers.rcl import RCL, rcnn_lrn

NAMES = {RCNNVariant.rcnn: "RCNN", RCNNVariant.rcnn_recursive: "rCNN", RCNNVariant.wcnn: "WCNN"}


class RCNN(ImageClassifier):
    """Built with the dataset's shape and ``model.*`` (RCNNConfig holds every default);
    ``image_size`` is accepted and unused: the global max pool takes any size."""

    def __init__(self, *, in_channels: int, num_classes: int, image_size: Sequence[int],
                 K: int, T: int, dropout: float, lrn: bool, conv1_lrn: bool, lrn_alpha: float,
                 variant: RCNNVariant | str) -> None:
        super().__init__()
        self.variant = RCNNVariant.of("variant", variant)
        self.K, self.T = K, T
        steps = 0 if self.variant is RCNNVariant.wcnn else T
        recursive = self.variant is RCNNVariant.rcnn_recursive

        def rcl() -> RCL:
            return RCL(K, steps=steps, lrn=lrn, lrn_alpha=lrn_alpha, recursive=recursive)

        self.features = nn.Sequential()
        self.features.add_module("conv1", nn.Conv2d(in_channels, K, 5, padding=2))
        self.features.add_module("relu1", nn.ReLU(inplace=True))
        if conv1_lrn:
            self.features.add_module("norm1", rcnn_lrn(K, lrn_alpha))
        self.features.add_module("pool1", nn.MaxPool2d(3, stride=2, padding=1))
        self.features.add_module("rcl1", rcl())
        self.features.add_module("drop1", nn.Dropout(dropout))
        self.features.add_module("rcl2", rcl())
        self.features.add_module("pool2", nn.MaxPool2d(3, stride=2, padding=1))
        self.features.add_module("drop2", nn.Dropout(dropout))
        self.features.add_module("rcl3", rcl())
        self.features.add_module("drop3", nn.Dropout(dropout))
        self.features.add_module("rcl4", rcl())
        self.classifier = nn.Linear(K, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.features.modules():
            if isinstance(module, RCL):
                module.reset_parameters()
        conv1 = self.features.conv1
        nn.init.kaiming_normal_(conv1.weight, nonlinearity="relu")
        nn.init.zeros_(conv1.bias)

    @property
    def arch(self) -> str:
        name = f"{NAMES[self.variant]}-{self.K}"
        return name if self.variant is RCNNVariant.wcnn else f"{name} (T={self.T})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.amax(x, dim=(2, 3))  # global max pooling over the map
        return self.classifier(x)


__all__ = ["RCNN"]
