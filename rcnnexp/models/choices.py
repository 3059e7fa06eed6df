"""The models' hyper-parameters that take one of a fixed set of names, one Choice each.

The schemas in ``rcnnexp/config/model.py`` type their fields with these and the models
convert what they are given with ``Choice.of``. They live in a module of their own, without
torch, so that composing and validating a config (and every error found there) does not
wait for torch to load.
"""

from __future__ import annotations

from rcnnexp.choice import Choice


class RCNNVariant(Choice):
    """RCNN's Table 1: the model and its two baselines."""

    rcnn = "rcnn"  # recurrent convolutional layers (the paper's model)
    rcnn_recursive = "rcnn_recursive"  # rCNN: no feed-forward input after t=0 (Table 1)
    wcnn = "wcnn"  # WCNN: each RCL replaced by one plain 3x3 convolution (Table 1)


class CRCSigma(Choice):
    """The per-step non-linearity s_i (Table 2a)."""

    separate_bn = "separate_bn"  # a BatchNorm per step + ReLU, no bias (the paper's default)
    shared_bn = "shared_bn"  # one BatchNorm shared by all steps + ReLU, no bias
    relu = "relu"  # ReLU with a bias b
    linear = "linear"  # linear recursion with a bias; BatchNorm + ReLU at the layer's output


class CRCMode(Choice):
    """Table 2d: the CRC's recurrence, or its grouped control."""

    recurrent = "recurrent"  # h_i = s_i(x_i * W_x + h_{i-1} * W_h) (the paper's CRC)
    grouped = "grouped"  # h_i = s_i(x_i * (W_x (x) W_h)), no recurrence


KERNELS = (1, 3)  # the sides of W_x and W_h that Table 2c tries


class Direction(Choice):
    """A scanning order over the grid of regions (Table 4 ablates them)."""

    left_to_right = "left_to_right"
    right_to_left = "right_to_left"
    top_to_bottom = "top_to_bottom"
    bottom_to_top = "bottom_to_top"


class BPTT(Choice):
    window = "window"  # the paper: gradients stop at window (row/column) boundaries
    sequence = "sequence"  # back-propagate through the whole sequence


__all__ = ["BPTT", "KERNELS", "CRCMode", "CRCSigma", "Direction", "RCNNVariant"]
