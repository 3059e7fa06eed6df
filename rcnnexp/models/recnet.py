"""RecNet(e, S1, S2, S3, d1, d2, d3) (Retsinas et al., BMVC 2019), laid out as Table 1
(right), with ``S = [S1, S2, S3]`` and ``d = [d1, d2, d3]``:

    stem: conv 3x3 + BN + ReLU                      -> S1*d1 channels
    stage 1: Rec(S1, e*S1, d1) -> S1*d1             (CRC(S1, e*S1, d1) + TB)
             Rec(S1, e*S1, d1) -> S2*d2
             max-pool 2x2
    stage 2: Rec(S2, e*S2, d2) -> S2*d2
             Rec(S2, e*S2, d2) -> S3*d3
             max-pool 2x2
    stage 3: Rec(S3, e*S3, d3) -> S3*d3
             Rec(S3, e*S3, d3) -> S3*d3
    global average pool -> linear (S3*d3 -> classes)
    (with ``head_hidden=H``: linear S3*d3 -> H, ReLU, linear H -> classes)

The last TB of a stage outputs the next stage's S*d channels, so every CRC sees exactly d
segments of S channels. The acronym RecNet-D-W has D = 2 (d1 + d2 + d3) and
W = e max(S_i d_i). Any number of stages works (``len(S) == len(d)``); the paper's have 3.

Not stated by the paper, chosen here: the stem's and TBs' convolutions have no bias (each
is followed by a BatchNorm); with that, RecNet(4,8,16,32,10,10,10) on CIFAR-100 counts
1,733,140 parameters, 36 K under the paper's 1,769 K (docs/models.md). The average pool
covers the whole map (8x8 on CIFAR, so any input size works); max-pools are 2x2/2.

``head_hidden`` is not the paper's text but fits its tables: the shortfall grows with the
last stage's width like a hidden fully connected layer of about 161 units before the
classifier, and with ``head_hidden=161`` 14 of the 17 counts of Tables 2b-2d and 3 fall
within the paper's rounding (docs/models.md lists every row). The default, null, is the
single linear layer Table 1 describes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rcnnexp.models.arguments import recnet_stages
from rcnnexp.models.base import ImageClassifier
from rcnnexp.models.layers.crc import CRCMode, CRCSigma, RecurrentModule


class RecNet(ImageClassifier):
    """Built with the dataset's shape and ``model.*`` (RecNetConfig holds every default)."""

    def __init__(self, *, in_channels: int, num_classes: int, image_size: Sequence[int],
                 e: int, S: Sequence[int], d: Sequence[int], sigma: CRCSigma | str,
                 wx_kernel: int, wh_kernel: int, mode: CRCMode | str, merge_transition: bool,
                 head_hidden: int | None) -> None:
        super().__init__()
        S, d = recnet_stages(e, S, d)
        smallest = 2 ** (len(S) - 1)  # one 2x2 max-pool between stages
        if min(image_size) < smallest:
            size = "x".join(map(str, image_size))
            raise ValueError(f"RecNet with {len(S)} stages needs inputs of at least "
                             f"{smallest}x{smallest} ({len(S) - 1} 2x2 max-pools), got {size}")
        self.e, self.S, self.d = e, S, d
        self.sigma = CRCSigma.of("sigma", sigma)
        self.mode = CRCMode.of("mode", mode)
        self.kernels = (wx_kernel, wh_kernel)
        widths = [s * k for s, k in zip(S, d, strict=True)]  # S_i * d_i: a stage's in/out

        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(in_channels, widths[0], 3, padding=1,
                                               bias=False))
        self.stem.add_module("norm", nn.BatchNorm2d(widths[0]))
        self.stem.add_module("relu", nn.ReLU(inplace=True))
        nn.init.kaiming_normal_(self.stem.conv.weight, nonlinearity="relu")
        for k, (s, depth) in enumerate(zip(S, d, strict=True)):
            last = k == len(S) - 1
            stage = nn.Sequential()
            for j, out in enumerate((widths[k], widths[k] if last else widths[k + 1])):
                stage.add_module(f"rec{j + 1}", RecurrentModule(
                    s, e * s, depth, out, merge_transition=merge_transition, sigma=self.sigma,
                    wx_kernel=wx_kernel, wh_kernel=wh_kernel, mode=self.mode))
            if not last:
                stage.add_module("pool", nn.MaxPool2d(2))
            self.add_module(f"stage{k + 1}", stage)
        self.stages = [f"stage{k + 1}" for k in range(len(S))]
        features = widths[-1]
        self.head: nn.Sequential | None = None
        if head_hidden:
            self.head = nn.Sequential(nn.Linear(features, head_hidden), nn.ReLU(inplace=True))
            features = head_hidden
        self.classifier = nn.Linear(features, num_classes)

    @property
    def depth(self) -> int:
        """The acronym's depth: two CRC layers of d_i steps per stage."""
        return 2 * sum(self.d)

    @property
    def width(self) -> int:
        """The acronym's width: the widest CRC output, e * max(S_i d_i)."""
        return self.e * max(s * k for s, k in zip(self.S, self.d, strict=True))

    @property
    def arch(self) -> str:
        notes = []
        if self.sigma is not CRCSigma.separate_bn:
            notes.append(f"sigma={self.sigma}")
        if self.kernels != (3, 3):
            notes.append(f"W_x {self.kernels[0]}x{self.kernels[0]}, "
                         f"W_h {self.kernels[1]}x{self.kernels[1]}")
        if self.mode is not CRCMode.recurrent:
            notes.append(self.mode)
        return f"RecNet-{self.depth}-{self.width}" + (f" ({'; '.join(notes)})" if notes else "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for name in self.stages:
            x = getattr(self, name)(x)
        x = x.mean(dim=(2, 3))  # global average pooling (8x8 on CIFAR)
        if self.head is not None:
            x = self.head(x)
        return self.classifier(x)


__all__ = ["RecNet"]
