"""RecNets' layers (Retsinas et al., BMVC 2019): the channel-wise recurrent convolutional
(CRC) layer, the transition block (TB) and the Recurrent module that composes them.

CRC(S_in, S_out, d) splits its input channels into d segments x_i of S_in channels and runs
an RNN over them (Eq. 2-4):

    h_0 = s_0(x_0 * W_x)
    h_i = s_i(x_i * W_x + h_{i-1} * W_h)            i = 1 .. d-1

with W_x: S_out x S_in x k x k and W_h: S_out x S_out x k x k shared by every step; the
output is the concatenation of the h_i (d * S_out channels, segment i at channels
i*S_out .. (i+1)*S_out). The non-linearity ``sigma`` is one of Table 2a's:

* ``separate_bn`` (the paper's default, Eq. 3): a BatchNorm per step + ReLU, no bias b:
  ``norm`` is a list of d ``BatchNorm2d(S_out)``, ``norm[i]`` step i's (ordinary modules,
  so that SyncBatchNorm conversion and torch.compile see them as such). Checkpoints
  written before stored them as one ``BatchNorm2d(d * S_out)`` whose channel block i was
  step i's; they still load (:meth:`CRC._load_from_state_dict` splits them).
* ``shared_bn``: one ``BatchNorm2d(S_out)`` applied at every step (each step normalises
  with its own batch statistics) + ReLU, no bias (a BatchNorm makes b redundant).
* ``relu``: ReLU with the bias b (Eq. 2).
* ``linear`` (Eq. 4): no per-step non-linearity, the recursion runs on the linear
  pre-activations; BatchNorm + ReLU at the layer's output (a BatchNorm per segment, stored
  as for ``separate_bn``). The bias b is added at every step, as in
  Eq. 2 and 5 (Eq. 4 omits it at step 0 and Eq. 5 keeps it: they disagree; with a
  BatchNorm after the layer the choice barely matters).

``mode="grouped"`` is Table 2d's control: no recurrence, ``h_i = s_i(x_i * (W_x (x) W_h))``,
i.e. every segment goes through W_x then W_h (the same parameters, no history term).

Fast path: the d input-side convolutions x_i * W_x are one convolution over the segments
folded into the batch dimension (a free reshape of NCHW memory), so only the W_h recurrence
runs step by step. :class:`RecurrentModule` with ``merge_transition=True`` computes CRC + TB
as Eq. 7, ``y = sum_i A_i h_i``, accumulating each step's 1x1 response so that the
d * S_out-wide concatenation is never built.

Not stated by the paper, chosen here: "same" padding (k // 2) so the map size is kept (Table
1 keeps it); He initialisation (fan-in, ReLU gain) of W_x and W_h, each scaled by 1/sqrt(2)
in recurrent mode so that the sum of the two terms starts with the variance of one He layer
(as this project's RCL does); BatchNorm starts at weight 1, bias 0; b starts at 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rcnnexp.models.choices import KERNELS, CRCMode, CRCSigma


class CRC(nn.Module):
    """CRC(S_in, S_out, d): input ``[N, d * S_in, H, W]``, output ``[N, d * S_out, H, W]``."""

    summary_block = True  # `rcnnexp info` lists a CRC as one layer

    def __init__(self, s_in: int, s_out: int, d: int, *, sigma: CRCSigma | str,
                 wx_kernel: int, wh_kernel: int, mode: CRCMode | str) -> None:
        super().__init__()
        for name, value in (("S_in", s_in), ("S_out", s_out), ("d", d)):
            if value < 1:
                raise ValueError(f"CRC needs {name} >= 1, got {value}")
        for name, k in (("wx_kernel", wx_kernel), ("wh_kernel", wh_kernel)):
            if k not in KERNELS:
                raise ValueError(f"{name} must be 1 or 3, got {k}")
        self.s_in, self.s_out, self.d = s_in, s_out, d
        self.sigma = CRCSigma.of("sigma", sigma)
        self.mode = CRCMode.of("mode", mode)
        self.weight_x = nn.Parameter(torch.empty(s_out, s_in, wx_kernel, wx_kernel))
        self.weight_h = nn.Parameter(torch.empty(s_out, s_out, wh_kernel, wh_kernel))
        self.bias = (nn.Parameter(torch.empty(s_out))
                     if self.sigma in (CRCSigma.relu, CRCSigma.linear)
                     else None)
        self.norm: nn.Module | None = None
        if self.sigma in (CRCSigma.separate_bn, CRCSigma.linear):
            self.norm = nn.ModuleList(nn.BatchNorm2d(s_out) for _ in range(d))  # step i: [i]
        elif self.sigma is CRCSigma.shared_bn:
            self.norm = nn.BatchNorm2d(s_out)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        gain = math.sqrt(0.5) if self.mode is CRCMode.recurrent else 1.0
        for weight in (self.weight_x, self.weight_h):
            nn.init.kaiming_normal_(weight, nonlinearity="relu")
            weight.data.mul_(gain)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        for module in () if self.norm is None else self.norm.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        """Load a checkpoint of either layout: the per-step BatchNorms as ``norm.i.*``, or
        (written before they were modules of their own) as one ``norm.*`` of d * S_out
        channels, whose block i is split out as step i's; its one counter of batches goes
        to every step, which saw as many."""
        if isinstance(self.norm, nn.ModuleList) and f"{prefix}norm.weight" in state_dict:
            for name in ("weight", "bias", "running_mean", "running_var",
                         "num_batches_tracked"):
                old = state_dict.get(f"{prefix}norm.{name}")
                if old is None or old.dim() > 1 or (old.dim() and len(old) != self.d * self.s_out):
                    continue  # not this layer's: left for load_state_dict to refuse
                del state_dict[f"{prefix}norm.{name}"]
                for i in range(self.d):
                    block = old if old.dim() == 0 else old[i * self.s_out:(i + 1) * self.s_out]
                    state_dict[f"{prefix}norm.{i}.{name}"] = block.clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- the per-step non-linearity -----------------------------------------------------------
    def _batch_norm(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """Step i's BatchNorm: the shared one, or the i-th of the separate ones."""
        if isinstance(self.norm, nn.ModuleList):
            return self.norm[i](z)
        assert self.norm is not None
        return self.norm(z)

    def _sigma(self, z: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the layer's output segment i, the state step i+1 sees) from the pre-activation."""
        if self.sigma is CRCSigma.relu:
            h = F.relu(z)
            return h, h
        if self.sigma is CRCSigma.linear:  # the recursion is linear; BN + ReLU at the output
            return F.relu(self._batch_norm(z, i)), z
        h = F.relu(self._batch_norm(z, i))
        return h, h

    # -- forward ------------------------------------------------------------------------------
    def segments(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """The output segments h_0 .. h_{d-1} (``[N, S_out, H, W]`` each), in order."""
        n, channels, height, width = x.shape
        if channels != self.d * self.s_in:
            raise ValueError(f"CRC(S_in={self.s_in}, d={self.d}) expects {self.d * self.s_in} "
                             f"input channels, got {channels}")
        px, ph = self.weight_x.shape[-1] // 2, self.weight_h.shape[-1] // 2
        # segment i of image b is row b*d + i of the folded batch: one convolution for all
        folded = x.reshape(n * self.d, self.s_in, height, width)
        if self.mode is CRCMode.grouped:  # h_i = s_i(x_i * (W_x (x) W_h)): no history term
            z = F.conv2d(F.conv2d(folded, self.weight_x, padding=px), self.weight_h, self.bias,
                         padding=ph)
            for i, z_i in enumerate(z.view(n, self.d, self.s_out, height, width).unbind(1)):
                yield self._sigma(z_i, i)[0]
            return
        xw = F.conv2d(folded, self.weight_x, self.bias, padding=px)
        # unbind, not xw[:, i]: its backward stacks the d gradients once, where d slices
        # would each scatter into a zero tensor of xw's full size
        state: torch.Tensor | None = None
        for i, z in enumerate(xw.view(n, self.d, self.s_out, height, width).unbind(1)):
            if state is not None:
                z = z + F.conv2d(state, self.weight_h, padding=ph)
            out, state = self._sigma(z, i)
            yield out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(list(self.segments(x)), dim=1)

    def extra_repr(self) -> str:
        return (f"S_in={self.s_in}, S_out={self.s_out}, d={self.d}, sigma={self.sigma}, "
                f"W_x={self.weight_x.shape[-1]}x{self.weight_x.shape[-1]}, "
                f"W_h={self.weight_h.shape[-1]}x{self.weight_h.shape[-1]}, mode={self.mode}")


class TransitionBlock(nn.Module):
    """TB(C_in, C_out): 1x1 convolution (no bias: a BatchNorm follows) + BatchNorm + ReLU."""

    summary_block = True

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        """BatchNorm + ReLU of the 1x1 convolution's output ``y``."""
        return F.relu(self.norm(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(self.conv(x))


class RecurrentModule(nn.Module):
    """Rec(S_in, S_out, C_out, d) = CRC(S_in, S_out, d) followed by TB(d * S_out, C_out).

    With ``merge_transition`` the pair is computed as Eq. 7: the TB's 1x1 weight A is split
    into d blocks A_i (C_out x S_out) and ``y = sum_i h_i * A_i`` is accumulated step by
    step, so the d * S_out-wide CRC output never exists. The parameters are the same either
    way, so a checkpoint loads into both.
    """

    def __init__(self, s_in: int, s_out: int, d: int, out_channels: int, *,
                 merge_transition: bool, sigma: CRCSigma | str, wx_kernel: int,
                 wh_kernel: int, mode: CRCMode | str) -> None:
        super().__init__()
        self.crc = CRC(s_in, s_out, d, sigma=sigma, wx_kernel=wx_kernel, wh_kernel=wh_kernel,
                       mode=mode)
        self.tb = TransitionBlock(d * s_out, out_channels)
        self.merge_transition = merge_transition
        # merged, the pair runs as one layer: `rcnnexp info` shows it as one row
        self.summary_block = merge_transition

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.merge_transition:
            return self.tb(self.crc(x))
        blocks = self.tb.conv.weight.split(self.crc.s_out, dim=1)  # A_0 .. A_{d-1}
        y: torch.Tensor | None = None
        for a_i, h_i in zip(blocks, self.crc.segments(x), strict=True):
            response = F.conv2d(h_i, a_i)
            y = response if y is None else y.add_(response)
        assert y is not None
        return self.tb.finish(y)

    def extra_repr(self) -> str:
        return "merged (Eq. 7)" if self.merge_transition else ""


__all__ = ["CRC", "RecurrentModule", "TransitionBlock"]
