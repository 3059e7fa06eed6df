"""C-RNN's quad-directional RNN (Zuo et al., CVPR 2015 workshops, Eq. 3-7).

The conv5 map ``[N, C, H, W]`` is a grid of H x W regions, each a C-dimensional vector. Each
direction turns the grid into one sequence of H*W regions and runs its own RNN over it,

    h(s) = ReLU(W_hh h(s-1) + W_ih x(s) + b)

in scanning windows of one row (left_to_right, right_to_left) or one column (top_to_bottom,
bottom_to_top), non-overlapping, the hidden state carried from window to window. Per
region the directions' states are summed (Eq. 7); the output is ``[N, H*W, hidden]``, the
regions in row-major order (region (r, c) at r*W + c), which C-RNN concatenates into H.

Chosen here where the paper only says "similarly": left_to_right runs along each row from
the top-left corner to the bottom-right one (the paper's example); top_to_bottom runs down
each column, columns left to right; right_to_left and bottom_to_top are those sequences
reversed (they start at the bottom-right region), as the backward half of a bidirectional
RNN, which the paper cites for using future context.

``bptt="window"`` (the paper's BPTT, unfolded over one window) carries the state into the
next window detached from the graph, so gradients stop at window boundaries;
``bptt="sequence"`` back-propagates through the whole sequence. Forward values are the
same either way.

Each direction's parameters are those of a one-layer ReLU ``torch.nn.RNN``, by the same names
(:class:`SingleBiasRNN`), less ``nn.RNN``'s second bias: ``bias_ih`` is the paper's single
bias b, so a direction has 2 x 256 x 256 weights + 256 biases. Initialisation (unstated): PyTorch's
U(-1/sqrt(hidden), 1/sqrt(hidden)).

The recurrence is not ``nn.RNN``'s forward but its equations written as batched matrix
products over the short conv5 sequences (36 regions at 227x227), all directions at once:
one product for every ``W_ih x(s) + b``, then one ``W_hh h(s-1)`` per region. That is the
same function to float tolerance with the same parameters (and state_dict keys), and

- ``torch.compile`` traces it whole: Dynamo does not trace ``nn.RNN`` modules (C-RNN's
  four compiled with 5 graph breaks), and
- autocast runs it in the asked dtype: autocast sends ``nn.RNN`` on CUDA to cuDNN in fp16
  whatever dtype was asked (``_cudnn_rnn``'s autocast wrapper casts to ``kHalf``), while
  matrix products follow ``torch.autocast(dtype=...)``, bf16 included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rcnnexp.models.arguments import crnn_directions
from rcnnexp.models.choices import BPTT, Direction

ROWS = (Direction.left_to_right, Direction.right_to_left)  # windows of one row
REVERSED = (Direction.right_to_left, Direction.bottom_to_top)  # from the bottom-right region


class SingleBiasRNN(nn.Module):
    """One direction's parameters: a one-layer ReLU RNN with one bias vector, the paper's b.

    Named, shaped and initialised as ``nn.RNN(input_size, hidden_size, nonlinearity="relu")``'s
    (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, each U(-1/sqrt(hidden),
    1/sqrt(hidden)), drawn in nn.RNN's order, so that checkpoints and seeds of the time this
    was an ``nn.RNN`` give the same model), without ``bias_hh_l0``: ``nn.RNN`` adds two
    biases, ``b_ih + b_hh``, the paper one. :class:`QuadDirectionalRNN` runs the recurrence.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        dropped_bias_hh = torch.empty(self.hidden_size)  # drawn as nn.RNN draws it, not kept
        for tensor in (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, dropped_bias_hh):
            nn.init.uniform_(tensor, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.weight_ih_l0.shape[1]}, {self.hidden_size}, nonlinearity=relu"


class QuadDirectionalRNN(nn.Module):
    """Input ``[N, C, H, W]``; output ``[N, H*W, hidden]``, the directions summed."""

    summary_block = True  # `rcnnexp info` lists the RNN layer as one row

    def __init__(self, input_size: int, *, hidden_size: int,
                 directions: Sequence[Direction | str], bptt: BPTT | str,
                 dropout: float) -> None:
        super().__init__()
        self.directions = crnn_directions(directions)
        self.bptt = BPTT.of("bptt", bptt)
        self.hidden_size = hidden_size
        self.rnns = nn.ModuleDict({d.value: SingleBiasRNN(input_size, hidden_size)
                                   for d in self.directions})
        self.dropout = nn.Dropout(dropout)  # the paper's dropout on the RNN layer

    @staticmethod
    def scan(x: torch.Tensor, direction: str) -> tuple[torch.Tensor, int]:
        """``[N, C, H, W]`` -> (the direction's sequence ``[N, H*W, C]``, window length)."""
        if direction in ROWS:
            seq, window = x.permute(0, 2, 3, 1).flatten(1, 2), x.shape[3]  # row by row
        else:
            seq, window = x.permute(0, 3, 2, 1).flatten(1, 2), x.shape[2]  # column by column
        if direction in REVERSED:
            seq = seq.flip(1)
        return seq, window

    @staticmethod
    def unscan(seq: torch.Tensor, direction: str, height: int, width: int) -> torch.Tensor:
        """A direction's outputs ``[N, H*W, D]`` back into row-major region order."""
        if direction in REVERSED:
            seq = seq.flip(1)
        if direction not in ROWS:  # column-major -> row-major
            n, _, dim = seq.shape
            seq = seq.reshape(n, width, height, dim).transpose(1, 2).reshape(n, -1, dim)
        return seq

    def _recur(self, seq: torch.Tensor, windows: Sequence[int]) -> torch.Tensor:
        """``h(s) = ReLU(W_hh h(s-1) + W_ih x(s) + b)`` for the stacked sequences ``[D, N, T,
        C]`` of the D directions (direction d's state detached every ``windows[d]`` regions
        with window BPTT) -> the states ``[D, N, T, hidden]``."""
        rnns = list(self.rnns.values())
        w_ih = torch.stack([rnn.weight_ih_l0 for rnn in rnns]).transpose(1, 2)  # [D, C, hid]
        w_hh = torch.stack([rnn.weight_hh_l0 for rnn in rnns]).transpose(1, 2)  # [D, hid, hid]
        bias = torch.stack([rnn.bias_ih_l0 for rnn in rnns]).unsqueeze(1)  # [D, 1, hid]
        d, n, t, c = seq.shape
        inputs = torch.baddbmm(bias, seq.reshape(d, n * t, c), w_ih).view(d, n, t, -1)
        # in the autocast dtype once (autocast would cast the stacked W_hh at every step)
        w_hh = w_hh.to(inputs.dtype)
        h = inputs.new_zeros(d, n, inputs.shape[-1])
        states = []
        for s in range(t):
            if s > 0 and self.bptt is BPTT.window:
                h = self._detach_at_window_start(h, s, windows)
            h = torch.relu(torch.baddbmm(inputs[:, :, s], h, w_hh))
            states.append(h)
        return torch.stack(states, dim=2)

    @staticmethod
    def _detach_at_window_start(h: torch.Tensor, step: int,
                                windows: Sequence[int]) -> torch.Tensor:
        """The state carried into a new window, detached from the graph (BPTT over one
        window: no gradient into the previous one), per direction."""
        starts = [step % window == 0 for window in windows]
        if all(starts):
            return h.detach()
        if not any(starts):
            return h
        return torch.stack([hd.detach() if start else hd
                            for hd, start in zip(h.unbind(0), starts, strict=True)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        scans = [self.scan(x, direction) for direction in self.rnns]
        states = self._recur(torch.stack([seq for seq, _ in scans]), [w for _, w in scans])
        total: torch.Tensor | None = None
        for direction, out in zip(self.rnns, states.unbind(0), strict=True):
            out = self.unscan(out, direction, height, width)
            total = out if total is None else total + out
        assert total is not None
        return self.dropout(total)

    def extra_repr(self) -> str:
        return f"directions={[str(d) for d in self.directions]}, bptt={self.bptt}"


__all__ = ["QuadDirectionalRNN", "SingleBiasRNN"]
