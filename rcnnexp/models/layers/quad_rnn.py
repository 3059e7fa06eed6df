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

Each direction is a ``torch.nn.RNN`` (so cuDNN runs it on GPU) with the paper's single bias
b: ``bias_ih`` is b and ``bias_hh`` is a constant zero buffer (:class:`SingleBiasRNN`), so a
direction has 2 x 256 x 256 weights + 256 biases. Initialisation (unstated): PyTorch's
U(-1/sqrt(hidden), 1/sqrt(hidden)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rcnnexp.models.arguments import crnn_directions
from rcnnexp.models.choices import BPTT, Direction

ROWS = (Direction.left_to_right, Direction.right_to_left)  # windows of one row
REVERSED = (Direction.right_to_left, Direction.bottom_to_top)  # from the bottom-right region


class SingleBiasRNN(nn.RNN):
    """One-layer ReLU ``nn.RNN`` (batch first) with one bias vector, as the paper's b.

    ``nn.RNN`` adds two biases, ``b_ih + b_hh``; here ``bias_hh_l0`` is a zero buffer (not
    a parameter, not saved), so it stays zero whatever trains or freezes the module.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, nonlinearity="relu", batch_first=True)
        zeros = torch.zeros_like(self.bias_hh_l0.data)
        del self.bias_hh_l0
        self.register_buffer("bias_hh_l0", None, persistent=False)
        self.bias_hh_l0 = zeros  # nn.RNN's __setattr__ also puts it into _flat_weights


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

    def _run(self, rnn: nn.RNN, seq: torch.Tensor, window: int) -> torch.Tensor:
        if self.bptt is BPTT.sequence:
            return rnn(seq)[0]
        outputs, state = [], None
        for start in range(0, seq.shape[1], window):
            out, last = rnn(seq[:, start:start + window], state)
            outputs.append(out)
            state = last.detach()  # BPTT over one window: no gradient into the previous one
        return torch.cat(outputs, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        total: torch.Tensor | None = None
        for direction, rnn in self.rnns.items():
            seq, window = self.scan(x, direction)
            out = self.unscan(self._run(rnn, seq, window), direction, height, width)
            total = out if total is None else total + out
        assert total is not None
        return self.dropout(total)

    def extra_repr(self) -> str:
        return f"directions={[str(d) for d in self.directions]}, bptt={self.bptt}"


__all__ = ["QuadDirectionalRNN", "SingleBiasRNN"]
