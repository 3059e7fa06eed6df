"""The recurrent convolutional layer (RCL) of Liang & Hu, CVPR 2015.

For unit (i, j) of map k at step t:

    z(t) = w_f^T u + w_r^T x(t-1) + b        (at t = 0 only the feed-forward term)
    x(t) = LRN(ReLU(z(t)))

with one bias per map shared by both terms. The feed-forward input ``u`` is the same at
every step, so ``w_f * u + b`` is computed once per forward pass and reused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rcnnexp.models.layers.lrn import LocalResponseNorm


def rcnn_lrn(channels: int, alpha: float) -> LocalResponseNorm:
    """LRN over N = K/8 + 1 neighbouring maps with beta = 0.75 (the paper's); the paper's
    alpha is 0.001 (``model.lrn_alpha``). It runs in the autocast dtype (layers/lrn.py)."""
    return LocalResponseNorm(channels // 8 + 1, alpha=alpha, beta=0.75, k=1.0)


class RCL(nn.Module):
    """An RCL with K maps unrolled ``steps`` times (depth steps + 1).

    ``recursive=True`` is Table 1's rCNN: after t = 0 the feed-forward input is dropped,
    ``z(t) = w_r^T x(t-1) + b`` (tied weights, the same parameters). With ``steps=0`` there
    is no recurrent weight at all and the layer is a plain 3x3 convolution (WCNN).
    """

    summary_block = True  # `rcnnexp info` lists an RCL as one layer

    def __init__(self, channels: int, *, steps: int, lrn: bool, lrn_alpha: float,
                 recursive: bool) -> None:
        super().__init__()
        self.steps = steps
        self.recursive = recursive
        self.feedforward = nn.Conv2d(channels, channels, 3, padding=1, bias=True)  # w_f, b
        self.recurrent = (nn.Conv2d(channels, channels, 3, padding=1, bias=False)  # w_r
                          if steps > 0 else None)
        self.norm = rcnn_lrn(channels, lrn_alpha) if lrn else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation; with recurrence each of the two convolutions is scaled by
        1/sqrt(2), so that w_f * u + w_r * x starts with the variance of one He layer."""
        gain = 0.5**0.5 if self.recurrent is not None else 1.0
        for conv in (self.feedforward, self.recurrent):
            if conv is not None:
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                conv.weight.data.mul_(gain)
        nn.init.zeros_(self.feedforward.bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        feedforward = self.feedforward(u)  # w_f * u + b: once, reused at every step
        x = self.norm(F.relu(feedforward))
        if self.recurrent is None:
            return x
        if self.recursive:
            bias = self.feedforward.bias.view(1, -1, 1, 1)
            for _ in range(self.steps):
                x = self.norm(F.relu(self.recurrent(x) + bias))
        else:
            for _ in range(self.steps):
                x = self.norm(F.relu(self.recurrent(x) + feedforward))
        return x

    def extra_repr(self) -> str:
        return f"steps={self.steps}, recursive={self.recursive}"
