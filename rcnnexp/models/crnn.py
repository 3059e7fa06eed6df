"""C-RNN (Zuo et al., CVPR 2015 workshops), laid out as the paper's Figure 1 and Sec. 4.1:

    features: conv1 .. pool5 of AlexNet (bvlc_alexnet)    (227x227 in: 256 x 6x6 regions)
    rnn:      quad-directional RNN, ReLU, 256 hidden, one row/column windows,
              the directions summed per region -> dropout 0.5
    fc:       H = the 36 summed states concatenated (9,216-d) -> fc6 4096 -> fc7 4096
              (ReLU + dropout 0.5 each)
    classifier: fc8, N-way

Table 4's ablations choose ``directions``; with W_hh = 0, W_ih = I, b = 0 and one direction
the model is AlexNet, up to the order of fc6's inputs (region-major here, channel-major in
AlexNet). The MIT Indoor protocol (fine-tune only the RNN layer and the softmax) is
``finetune.trainable=[rnn,classifier]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rcnnexp.models.alexnet import AlexNetFeatures, classifier_layer, fc_layers
from rcnnexp.models.base import ImageClassifier
from rcnnexp.models.layers.quad_rnn import BPTT, Direction, QuadDirectionalRNN

SHORT = {Direction.left_to_right: "lr", Direction.right_to_left: "rl",
         Direction.top_to_bottom: "tb", Direction.bottom_to_top: "bt"}


class CRNN(ImageClassifier):
    """Parts: ``features`` (conv1-5), ``rnn``, ``fc`` (fc6-7), ``classifier`` (fc8). Built
    with the dataset's shape and ``model.*`` (CRNNConfig holds every default)."""

    def __init__(self, *, in_channels: int, num_classes: int, image_size: Sequence[int],
                 channels: Sequence[int], groups: int, hidden: int,
                 directions: Sequence[Direction | str], bptt: BPTT | str, fc: int,
                 dropout: float) -> None:
        super().__init__()
        grid = AlexNetFeatures.grid("C-RNN", image_size)
        self.features = AlexNetFeatures(in_channels, channels=channels, groups=groups)
        self.rnn = QuadDirectionalRNN(channels[4], hidden_size=hidden, directions=directions,
                                      bptt=bptt, dropout=dropout)
        self.fc = fc_layers(hidden * grid[0] * grid[1], fc, dropout)
        self.classifier = classifier_layer(fc, num_classes)

    @property
    def arch(self) -> str:
        dirs = self.rnn.directions
        name = f"C-RNN{len(dirs)}"
        return name if len(dirs) == 4 else f"{name}({'+'.join(SHORT[d] for d in dirs)})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.rnn(x)  # [N, regions, hidden]
        x = self.fc(torch.flatten(x, 1))  # H: region 1's state, then region 2's, ...
        return self.classifier(x)


__all__ = ["CRNN"]
