"""Schemas of the ``model`` group: one dataclass per model family.

Each ``_target_`` names the model class; the engine builds it with the dataset's
``in_channels``, ``num_classes`` and ``image_size`` added, so the fields here are exactly
the family's own hyper-parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from rcnnexp.config.checks import non_negative, one_of, positive, require


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


class CRCSigma(str, Enum):
    separate_bn = "separate_bn"  # a BatchNorm per step + ReLU, no bias (the paper's default)
    shared_bn = "shared_bn"  # one BatchNorm shared by all steps + ReLU, no bias
    relu = "relu"  # ReLU with a bias b
    linear = "linear"  # linear recursion with a bias; BatchNorm + ReLU at the layer's output


class CRCMode(str, Enum):
    recurrent = "recurrent"  # h_i = s_i(x_i * W_x + h_{i-1} * W_h) (the paper's CRC)
    grouped = "grouped"  # Table 2d: h_i = s_i(x_i * (W_x (x) W_h)), no recurrence


@dataclass
class RecNetConfig:
    """RecNet(e, S1, S2, S3, d1, d2, d3) (Retsinas et al. 2019) as S=[S1,S2,S3], d=[d1,d2,d3].

    Sweep a list with Hydra's list syntax: ``rcnnexp train -m 'model.d=[5,5,5],[10,10,10]'``.
    """

    _target_: str = "rcnnexp.models.recnet.RecNet"
    e: int = 4  # expansion: each CRC has S_out = e * S_in
    S: list[int] = field(default_factory=lambda: [8, 16, 32])  # segment channels per stage
    d: list[int] = field(default_factory=lambda: [10, 10, 10])  # segments (steps) per stage
    sigma: CRCSigma = CRCSigma.separate_bn  # Table 2a
    wx_kernel: int = 3  # W_x k x k, 1 or 3 (Table 2c)
    wh_kernel: int = 3  # W_h k x k, 1 or 3 (Table 2c)
    mode: CRCMode = CRCMode.recurrent  # Table 2d
    # compute CRC + TB as Eq. 7 without the e*S*d-wide tensor: same function and weights
    merge_transition: bool = False
    # units of a hidden layer (linear + ReLU) between the pooled features and the classifier;
    # null: the single linear layer of the paper's text. Not the text's, but 161 reproduces
    # 14 of the 17 parameter counts of its Tables 2b-2d and 3 (docs/models.md)
    head_hidden: int | None = None

    def __post_init__(self) -> None:
        positive("model.e", self.e)
        require(len(self.S) > 0 and len(self.S) == len(self.d),
                "model.S and model.d must give one value per stage (the paper's RecNet has 3: "
                f"S=[S1,S2,S3], d=[d1,d2,d3]); got S={list(self.S)} and d={list(self.d)}")
        require(all(s > 0 for s in self.S) and all(k > 0 for k in self.d),
                f"model.S and model.d must be positive, got S={list(self.S)}, d={list(self.d)}")
        one_of("model.wx_kernel", self.wx_kernel, [1, 3])
        one_of("model.wh_kernel", self.wh_kernel, [1, 3])
        require(self.head_hidden is None or self.head_hidden > 0,
                f"model.head_hidden must be positive or null, got {self.head_hidden}")


class Direction(str, Enum):
    left_to_right = "left_to_right"
    right_to_left = "right_to_left"
    top_to_bottom = "top_to_bottom"
    bottom_to_top = "bottom_to_top"


class BPTT(str, Enum):
    window = "window"  # the paper: gradients stop at window (row/column) boundaries
    sequence = "sequence"  # back-propagate through the whole sequence


@dataclass
class AlexNetConfig:
    """AlexNet as Caffe's bvlc_alexnet (the C-RNN paper's baseline)."""

    _target_: str = "rcnnexp.models.alexnet.AlexNet"
    channels: list[int] = field(default_factory=lambda: [96, 256, 384, 384, 256])  # conv1-5
    groups: int = 2  # conv2, conv4, conv5 are split into this many groups (two GPUs in 2012)
    fc: int = 4096  # units of fc6 and fc7
    dropout: float = 0.5  # dropout rate after fc6 and fc7

    def __post_init__(self) -> None:
        require(len(self.channels) == 5 and all(c > 0 for c in self.channels),
                "model.channels must be five positive widths (conv1-5, AlexNet: "
                f"[96, 256, 384, 384, 256]), got {list(self.channels)}")
        positive("model.groups", self.groups)
        require(all(c % self.groups == 0 for c in self.channels),
                f"model.channels {list(self.channels)} must be divisible by model.groups="
                f"{self.groups} (conv2, conv4 and conv5 are grouped convolutions)")
        positive("model.fc", self.fc)
        require(0 <= self.dropout < 1, f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class CRNNConfig(AlexNetConfig):
    """C-RNN (Zuo et al. 2015): AlexNet's conv1-5, a quad-directional RNN, fc6-8."""

    _target_: str = "rcnnexp.models.crnn.CRNN"
    hidden: int = 256  # RNN state size (W_ih: hidden x conv5 channels, W_hh: hidden x hidden)
    directions: list[Direction] = field(default_factory=lambda: list(Direction))  # Table 4
    bptt: BPTT = BPTT.window

    def __post_init__(self) -> None:
        super().__post_init__()
        positive("model.hidden", self.hidden)
        require(len(self.directions) > 0,
                "model.directions must name at least one of "
                f"{', '.join(d.value for d in Direction)}")
        require(len(set(self.directions)) == len(self.directions),
                f"model.directions lists a direction twice: "
                f"{[getattr(d, 'value', d) for d in self.directions]}")
