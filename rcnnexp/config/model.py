"""Schemas of the ``model`` group: one dataclass per model family.

Each ``_target_`` names the model class; the engine builds it with the dataset's
``in_channels``, ``num_classes`` and ``image_size`` added, so the fields here are exactly
the family's own hyper-parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from rcnnexp.config.checks import non_negative, positive, require


class RCNNVariant(str, Enum):
    rcnn = "rcnn"  # recurrent convolutional layers (the paper's model)
    rcnn_recursive = "rcnn_recursive"  # rCNN: no feed-forward input after t=0 (Table 1)
    wcnn = "wcnn"  # WCNN: each RCL replaced by one plain 3x3 convolution (Table 1)


@dataclass
class RCNNConfig:
    """RCNN-K (Liang & Hu 2015): conv1, then 4 RCLs unrolled T steps, global max pool."""

    _target_: str = "rcnnexp.models.rcnn.RCNN"
    K: int = 96  # feature maps in every layer
    T: int = 3  # recurrent iterations of each RCL (depth T+1 per RCL)
    dropout: float = 0.5  # the paper tuned it and does not say to what
    lrn: bool = True  # LRN after every RCL step (the paper's default)
    conv1_lrn: bool = False  # LRN after conv1: the paper does not say
    variant: RCNNVariant = RCNNVariant.rcnn

    def __post_init__(self) -> None:
        positive("model.K", self.K)
        non_negative("model.T", self.T)
        require(0 <= self.dropout < 1, f"model.dropout must be in [0, 1), got {self.dropout}")
