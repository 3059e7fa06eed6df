"""Schemas of the ``model`` group: one dataclass per model family.

Each ``_target_`` names the model class; the engine builds it with the dataset's
``in_channels``, ``num_classes`` and ``image_size`` added, so the fields here are exactly
the family's own hyper-parameters. This is the one place that gives their defaults; the
model classes take every one of them as a keyword without a default of its own. A field
with a fixed set of names is typed with its :class:`~rcnnexp.choice.Choice` from
:mod:`rcnnexp.models.choices`, so OmegaConf refuses any other name while composing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rcnnexp.config.checks import (
    fits_in_memory,
    model_check,
    non_negative,
    one_of,
    positive,
    require,
)
from rcnnexp.models.arguments import (
    ALEXNET_CHANNELS,
    alexnet_channels,
    crnn_directions,
    recnet_stages,
)
from rcnnexp.models.choices import BPTT, KERNELS, CRCMode, CRCSigma, Direction, RCNNVariant

# RCNN's recurrent iterations at most: each of the T steps of an RCL keeps its activations
# for the backward pass, and even counting FLOPs runs all of them (model.T=100000 took
# minutes before failing); the papers' rows use T <= 3
RCNN_MAX_T = 100


@dataclass
class RCNNConfig:
    """RCNN-K (Liang & Hu 2015): conv1, then 4 RCLs unrolled T steps, global max pool."""

    _target_: str = "rcnnexp.models.rcnn.RCNN"
    K: int = 96  # feature maps in every layer
    T: int = 3  # recurrent iterations of each RCL (depth T+1 per RCL)
    dropout: float = 0.5  # the paper tuned it and does not say to what
    lrn: bool = True  # LRN after every RCL step (the paper's default)
    conv1_lrn: bool = False  # LRN after conv1: the paper does not say
    # the paper's 0.001 normalises in Caffe's units (pixels 0..255); in [0, 1] units the
    # same divisor needs about 255^2 times it (docs/models.md, Pixel units)
    lrn_alpha: float = 1.0e-3  # the LRN's alpha (the paper's: 0.001)
    variant: RCNNVariant = RCNNVariant.rcnn

    def __post_init__(self) -> None:
        positive("model.K", self.K)
        positive("model.lrn_alpha", self.lrn_alpha)
        non_negative("model.T", self.T)
        require(self.T <= RCNN_MAX_T, f"model.T={self.T} is more than RCNN_MAX_T={RCNN_MAX_T} "
                "recurrent steps, whose activations every RCL keeps for training: choose "
                f"model.T at most {RCNN_MAX_T} (the paper's rows use 3)")
        require(0 <= self.dropout < 1, f"model.dropout must be in [0, 1), got {self.dropout}")
        # the feedforward 3x3 K->K weights of the 4 RCLs, which every variant has
        fits_in_memory(f"model.K={self.K}", 4 * 9 * self.K**2)


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
        model_check(recnet_stages, self.e, self.S, self.d)
        one_of("model.wx_kernel", self.wx_kernel, KERNELS)
        one_of("model.wh_kernel", self.wh_kernel, KERNELS)
        require(self.head_hidden is None or self.head_hidden > 0,
                f"model.head_hidden must be positive or null, got {self.head_hidden}")


@dataclass
class AlexNetConfig:
    """AlexNet as Caffe's bvlc_alexnet (the C-RNN paper's baseline)."""

    _target_: str = "rcnnexp.models.alexnet.AlexNet"
    channels: list[int] = field(default_factory=lambda: list(ALEXNET_CHANNELS))  # conv1-5
    groups: int = 2  # conv2, conv4, conv5 are split into this many groups (two GPUs in 2012)
    fc: int = 4096  # units of fc6 and fc7
    dropout: float = 0.5  # dropout rate after fc6 and fc7

    def __post_init__(self) -> None:
        model_check(alexnet_channels, self.channels, self.groups)
        positive("model.fc", self.fc)
        # conv3's 3x3 weights (ungrouped) and fc7's fc x fc, which any input size has
        fits_in_memory(f"model.channels={self.channels} model.fc={self.fc}",
                       9 * self.channels[1] * self.channels[2] + self.fc**2)
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
        model_check(crnn_directions, self.directions)
