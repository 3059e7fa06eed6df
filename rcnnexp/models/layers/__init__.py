"""Building blocks named as the papers name them."""

from rcnnexp.models.layers.crc import CRC, RecurrentModule, TransitionBlock
from rcnnexp.models.layers.quad_rnn import QuadDirectionalRNN, SingleBiasRNN
from rcnnexp.models.layers.rcl import RCL

__all__ = ["CRC", "RCL", "QuadDirectionalRNN", "RecurrentModule", "SingleBiasRNN",
           "TransitionBlock"]
