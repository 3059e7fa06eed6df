"""Local response normalisation that keeps its input's dtype under autocast.

``nn.LocalResponseNorm`` is ``x / (k + alpha * mean of x^2 over n maps)^beta``, composed of
elementwise ops, an ``avg_pool3d`` and a ``pow``. Autocast runs ``pow`` in fp32 on CUDA and
``avg_pool3d`` in fp32 on CPU (which has no bf16 kernel for it), and ``x / divisor`` then
promotes to fp32: under bf16 every LRN returns fp32, so the next convolution casts it back,
one extra cast per LRN and twice the memory traffic, in a model (RCNN) that runs an LRN at
every recurrent step.

Here the LRN runs with autocast off, in its input's dtype, so a bf16 input gives a bf16
output. The sum of squares over the channel window is one matrix product with a banded
C x C matrix (``window_matrix``), and the backward pass is written out (``_LRN.backward``):
autograd through the elementwise ops ran a second ``pow`` and half a dozen full-size
passes more, and the window mean as a pool (``nn.LocalResponseNorm``'s ``avg_pool3d``, or a
2-D pool over ``[N, 1, C, H*W]``) ran at a few GFLOP/s on the CPU. On this project's 2-core
CPU the LRN of RCNN-32 on MNIST ([64, 32, 14, 14], forward and backward, fp32) took 16.6 ms
as a pool and 2.8 ms so (2026-12-02); it was half of RCNN's training step
(docs/performance.md). The output equals ``F.local_response_norm``'s to fp32 rounding
(summed in another order).

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

from typing import Any

import torch
from torch import nn


def window_matrix(channels: int, size: int, alpha: float, dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """``alpha / size`` where output map ``i`` takes the square of input map ``j`` (``j`` from
    ``i - size // 2`` to ``i + (size - 1) // 2``, the window of ``F.local_response_norm``),
    zero elsewhere: ``window @ squares`` is ``alpha`` times the window mean."""
    i = torch.arange(channels, device=device)
    offset = i[None, :] - i[:, None]
    inside = (offset >= -(size // 2)) & (offset <= (size - 1) // 2)
    return inside.to(dtype) * (alpha / size)


def _mix_channels(window: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``window @ x`` over the channel dimension of ``[N, C, *spatial]``, in ``x``'s memory
    format (a channels_last map is multiplied in place of its [N, H, W, C] layout)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return torch.matmul(x.movedim(1, -1), window.t()).movedim(-1, 1)
    n, c = x.shape[:2]
    return torch.matmul(window, x.reshape(n, c, -1)).view(x.shape)


class _LRN(torch.autograd.Function):
    """y = x * s^-beta with s = k + window @ x^2; the gradient, for an upstream g:
    dx = g * s^-beta - 2 beta x * (window^T @ (g * y / s))."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, size: int, alpha: float, beta: float,
                k: float) -> torch.Tensor:
        window = window_matrix(x.shape[1], size, alpha, x.dtype, x.device)
        s = _mix_channels(window, x * x) + k
        scale = s.pow(-beta)
        y = x * scale
        ctx.save_for_backward(x, y, s, scale, window)
        ctx.beta = beta
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, y, s, scale, window = ctx.saved_tensors
        through_window = _mix_channels(window.t(), grad * y / s)
        dx = torch.addcmul(grad * scale, x, through_window, value=-2 * ctx.beta)
        return dx, None, None, None, None


def local_response_norm(x: torch.Tensor, size: int, alpha: float, beta: float,
                        k: float) -> torch.Tensor:
    """``F.local_response_norm`` for ``[N, C, *spatial]`` in ``x``'s dtype and memory format."""
    return _LRN.apply(x, size, alpha, beta, k)


class LocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` (same arguments, no parameters, so the same state_dict) whose
    output has its input's dtype under autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        compute = torch.float32 if x.dtype == torch.float16 else x.dtype
        with torch.autocast(x.device.type, enabled=False):
            y = local_response_norm(x.to(compute), self.size, self.alpha, self.beta, self.k)
        return y.to(x.dtype)


__all__ = ["LocalResponseNorm", "local_response_norm", "window_matrix"]
