"""Schemas of the ``optim`` group: each option builds a ``torch.optim`` optimizer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rcnnexp.config.checks import non_negative, positive, require


@dataclass
class BiasGroupConfig:
    """Keys every optimizer shares: the biases' own rate and decay (Caffe's ``lr_mult`` and
    ``decay_mult``). Other values than the defaults put the biases (1-D parameters named
    ``*bias``) into a param group of their own; the defaults keep one group."""

    # the biases' learning rate over optim.lr (Caffe's lr_mult; bvlc_alexnet's is 2)
    bias_lr_factor: float = 1.0
    # the biases' L2 penalty; null: optim.weight_decay (Caffe's decay_mult; bvlc_alexnet: 0)
    bias_weight_decay: float | None = None

    def check_bias_group(self) -> None:
        """Called by each optimizer's ``__post_init__`` (a dataclass base's is not)."""
        finite(bias_lr_factor=self.bias_lr_factor)
        positive("optim.bias_lr_factor", self.bias_lr_factor)
        if self.bias_weight_decay is not None:
            finite(bias_weight_decay=self.bias_weight_decay)
            non_negative("optim.bias_weight_decay", self.bias_weight_decay)


@dataclass
class SGDConfig(BiasGroupConfig):
    _target_: str = "torch.optim.SGD"
    lr: float = 0.025  # the initial learning rate (the schedule scales it)
    momentum: float = 0.9  # of the velocity (heavy-ball momentum)
    nesterov: bool = False  # Nesterov momentum
    dampening: float = 0.0  # of the momentum (torch.optim.SGD)
    weight_decay: float = 5e-4  # L2 penalty on every parameter (biases: bias_weight_decay)
    # one kernel for the whole update, its learning rate read from the device (no step
    # waits for the host); null: fused on CUDA, the per-parameter loop elsewhere (on CPU
    # that keeps runs bit-identical to earlier ones)
    fused: bool | None = None

    def __post_init__(self) -> None:
        finite(lr=self.lr, momentum=self.momentum, dampening=self.dampening,
               weight_decay=self.weight_decay)
        positive("optim.lr", self.lr)
        non_negative("optim.momentum", self.momentum)
        non_negative("optim.weight_decay", self.weight_decay)
        if self.nesterov:
            require(self.momentum > 0 and self.dampening == 0,
                    "optim.nesterov=true needs optim.momentum > 0 and optim.dampening=0, got "
                    f"momentum={self.momentum}, dampening={self.dampening}")
        self.check_bias_group()


@dataclass
class AdamConfig(BiasGroupConfig):
    _target_: str = "torch.optim.Adam"
    lr: float = 1e-3  # the initial learning rate (the schedule scales it)
    # decay rates of the running means of the gradient and of its square
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8  # added to the denominator for numerical stability
    weight_decay: float = 0.0  # L2 penalty on every parameter (biases: bias_weight_decay)
    fused: bool | None = None  # as optim.fused of sgd: null is fused on CUDA

    def __post_init__(self) -> None:
        finite(lr=self.lr, eps=self.eps, weight_decay=self.weight_decay)
        positive("optim.lr", self.lr)
        non_negative("optim.weight_decay", self.weight_decay)
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        self.check_bias_group()


def finite(**values: float) -> None:
    """An infinite or NaN learning rate (or decay, ...) passes ``> 0`` but trains to NaN."""
    for key, value in values.items():
        require(math.isfinite(value), f"optim.{key} must be a finite number, got {value}")
