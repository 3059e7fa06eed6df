"""Local response normalisation that keeps its input's dtype under autocast.

``nn.LocalResponseNorm`` is ``x / (k + alpha * mean of x^2 over n maps)^beta``, composed of
elementwise ops, an ``avg_pool3d`` and a ``pow``. Autocast runs ``pow`` in fp32 on CUDA and
``avg_pool3d`` in fp32 on CPU (which has no bf16 kernel for it), and ``x / divisor`` then
promotes to fp32: under bf16 every LRN returns fp32, so the next convolution casts it back,
one extra cast per LRN and twice the memory traffic, in a model (RCNN) that runs an LRN at
every recurrent step.

Here the LRN runs with autocast off, in its input's dtype, so a bf16 input gives a bf16
output; the channel window is averaged by a 2-D pool over ``[N, 1, C, H*W]``, which CPU and
CUDA both have in bf16 and which gives the same fp32 values as ``F.local_response_norm``.

- bf16 has fp32's exponent range, so ``x^2`` cannot overflow, and nothing cancels (every
  term is positive and the divisor is at least k = 1): each op adds one bf16 rounding. On
  this CPU, for activations of scale 1 to 1000, the output is within 1.3e-2 (relative) of
  fp64's and the input gradient within 4e-3 (relative norm), about one bf16 rounding (3.9e-3)
  more than the fp32 LRN rounded to bf16; tests/test_compile.py pins the bound.
- fp16 cannot hold ``x^2`` for ``|x| > 255`` (inf, and the output 0), so an fp16 input is
  normalised in fp32 and the result (never larger than the input) cast back to fp16.
- fp32 and fp64 are normalised as they come.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def local_response_norm(x: torch.Tensor, size: int, alpha: float, beta: float,
                        k: float) -> torch.Tensor:
    """``F.local_response_norm`` for ``[N, C, *spatial]`` in ``x``'s dtype, the window mean
    taken by ``avg_pool2d`` over the channels (as the 3-D pool there, in the same order)."""
    n, c = x.shape[:2]
    squares = F.pad((x * x).reshape(n, 1, c, -1), (0, 0, size // 2, (size - 1) // 2))
    mean = F.avg_pool2d(squares, (size, 1), stride=1).view(x.shape)
    return x / (mean * alpha + k).pow(beta)


class LocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` (same arguments, no parameters, so the same state_dict) whose
    output has its input's dtype under autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        compute = torch.float32 if x.dtype == torch.float16 else x.dtype
        with torch.autocast(x.device.type, enabled=False):
            y = local_response_norm(x.to(compute), self.size, self.alpha, self.beta, self.k)
        return y.to(x.dtype)


__all__ = ["LocalResponseNorm", "local_response_norm"]
