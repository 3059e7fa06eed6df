"""Learning-rate schedules, set every iteration.

Each schedule is a multiplier on the optimizer's initial learning rate, evaluated at the
current iteration (``shape``), times an optional linear warm-up. Iteration-based shapes
(constant, step, cosine with restarts) are pure functions of the iteration, so a resumed run
only needs the iteration counter; the plateau schedule also keeps what it has seen of the
monitored metric. Schedules are built from the ``schedule`` config group through its
``_target_``, with ``optimizer``, ``iters_per_epoch`` and ``epochs`` supplied by the engine.

A fused optimizer (``optim.fused``) reads its learning rate from a tensor on its parameters'
device, which the schedule fills each step: a step then sends the rate with the kernel's
launch and never waits for the device. Other optimizers get a Python float, which they
use as it is (a float32 tensor would round it, and the foreach step reads a tensor back).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


class Schedule:
    """Base: sets ``lr = initial_lr * warmup(it) * shape(it)`` on every param group."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        iters_per_epoch: int,
        epochs: int,
        warmup_epochs: float = 0.0,
        warmup_start: float = 0.0,
    ) -> None:
        self.optimizer = optimizer
        self.iters_per_epoch = iters_per_epoch
        self.epochs = epochs
        self.total_iters = iters_per_epoch * epochs
        self.warmup_epochs = warmup_epochs
        self.warmup_iters = round(warmup_epochs * iters_per_epoch)
        self.warmup_start = warmup_start
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", float(group["lr"]))
        self.device_lrs = [device_lr(group) for group in optimizer.param_groups]
        self.iteration = 0

    # -- the schedule's shape ---------------------------------------------------------------
    def shape(self, iteration: int) -> float:
        """Multiplier on the initial learning rate at ``iteration`` (before warm-up)."""
        return 1.0

    def warmup(self, iteration: int) -> float:
        if iteration >= self.warmup_iters:
            return 1.0
        return self.warmup_start + (1.0 - self.warmup_start) * iteration / self.warmup_iters

    def factor(self, iteration: int) -> float:
        return self.warmup(iteration) * self.shape(iteration)

    # -- driving it ---------------------------------------------------------------------------
    def step(self) -> float:
        """Set the learning rate for the coming iteration; returns the first group's lr
        (a float computed here: reading it needs nothing from the device)."""
        f = self.factor(self.iteration)
        rates = []
        for group, on_device in zip(self.optimizer.param_groups, self.device_lrs, strict=True):
            lr = group["initial_lr"] * f
            rates.append(lr)
            if on_device is None:
                group["lr"] = lr
            else:  # (again after a restored optimizer state put the checkpoint's there)
                group["lr"] = on_device.fill_(lr)
        self.iteration += 1
        return rates[0]

    def on_eval(self, metrics: dict[str, float]) -> None:
        """Called after each evaluation with the epoch's metrics (only plateau listens)."""

    @property
    def should_stop(self) -> bool:
        """True when the schedule has nothing left to try (plateau after its last cut)."""
        return False

    def replay(self) -> dict[str, Any] | None:
        """The config (``_target_`` and keys) of a schedule that sets, epoch by epoch, the
        learning rates this one has set so far without watching any metric; None when this
        one already is such a schedule. RCNN's retraining on all training images replays the
        cuts its tuning run made (:mod:`rcnnexp.engine.stages`)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])


def device_lr(group: dict[str, Any]) -> torch.Tensor | None:
    """The tensor a fused optimizer's group reads its rate from (float32, as its kernels
    read it), on its parameters' device; None for other optimizers."""
    if not group.get("fused"):
        return None
    return torch.tensor(float(group["lr"]), dtype=torch.float32,
                        device=group["params"][0].device)


class ConstantSchedule(Schedule):
    """The initial learning rate throughout (after any warm-up)."""


class StepSchedule(Schedule):
    """Divide the learning rate by ``factor`` at each epoch in ``milestones``."""

    def __init__(self, *args: Any, milestones: Sequence[int] = (), factor: float = 10.0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.milestones = [int(m) * self.iters_per_epoch for m in milestones]
        self.divisor = float(factor)

    def shape(self, iteration: int) -> float:
        passed = sum(1 for m in self.milestones if iteration >= m)
        return self.divisor ** -passed


class CosineRestartsSchedule(Schedule):
    """Cosine annealing from the initial lr to ``min_lr``, restarted at the given epochs.

    Restarts at epochs 20, 60, 120 of 200 give cycles of 20, 40, 60 and 80 epochs (RecNet),
    which ``CosineAnnealingWarmRestarts`` (cycle lengths in a fixed ratio) cannot express.
    Updated every iteration (for RecNet our choice: the paper does not say whether per
    iteration or per epoch); at each restart the learning rate is back at its maximum.
    """

    def __init__(self, *args: Any, restarts: Sequence[int] = (), min_lr: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.boundaries = [0, *(int(r) * self.iters_per_epoch for r in restarts), self.total_iters]
        self.min_lr = float(min_lr)

    def shape(self, iteration: int) -> float:
        for start, end in zip(self.boundaries, self.boundaries[1:], strict=False):
            if start <= iteration < end:
                progress = (iteration - start) / (end - start)
                break
        else:  # past the last iteration: stay at the bottom of the last cycle
            progress = 1.0
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        initial = self.optimizer.param_groups[0]["initial_lr"]
        floor = self.min_lr / initial if initial > 0 else 0.0
        return floor + (1.0 - floor) * cosine


class PlateauSchedule(Schedule):
    """Divide by ``factor`` when the monitored metric stops improving, at most
    ``max_reductions`` times (RCNN: divide by 10 three times, ending at 1/1000)."""

    def __init__(self, *args: Any, monitor: str = "val_top1",
                 factor: float = 10.0, patience: int = 5, max_reductions: int = 3,
                 threshold: float = 0.0, stop_when_exhausted: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.monitor = monitor
        self.maximise = not monitor.endswith("loss")
        self.divisor = float(factor)
        self.patience = patience
        self.max_reductions = max_reductions
        self.threshold = threshold
        self.stop_when_exhausted = stop_when_exhausted
        self.best: float | None = None
        self.bad_evals = 0
        self.reductions = 0
        self.exhausted = False
        self.cut_epochs: list[int] = []  # epochs after whose evaluation the rate was divided

    def shape(self, iteration: int) -> float:
        return self.divisor ** -self.reductions

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.maximise:
            return value > self.best + self.threshold
        return value < self.best - self.threshold

    def on_eval(self, metrics: dict[str, float]) -> None:
        value = metrics[self.monitor]
        if self._improved(value):
            self.best = value
            self.bad_evals = 0
            return
        self.bad_evals += 1
        if self.bad_evals > self.patience:
            if self.iteration >= self.total_iters:
                return  # the last epoch: a cut would reach no epoch, and a replay would list it
            self.bad_evals = 0
            if self.reductions < self.max_reductions:
                self.reductions += 1
                self.cut_epochs.append(self.iteration // self.iters_per_epoch)
            else:
                self.exhausted = True

    @property
    def should_stop(self) -> bool:
        return self.stop_when_exhausted and self.exhausted

    def replay(self) -> dict[str, Any]:
        """A step schedule dividing by the same factor after the same epochs."""
        return {"_target_": f"{__name__}.StepSchedule", "milestones": list(self.cut_epochs),
                "factor": self.divisor, "warmup_epochs": self.warmup_epochs,
                "warmup_start": self.warmup_start}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best": self.best, "bad_evals": self.bad_evals,
                "reductions": self.reductions, "exhausted": self.exhausted,
                "cut_epochs": list(self.cut_epochs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.best = state["best"]
        self.bad_evals = int(state["bad_evals"])
        self.reductions = int(state["reductions"])
        self.exhausted = bool(state["exhausted"])
        # absent from checkpoints older than trainer.retrain, which never replay them
        self.cut_epochs = [int(e) for e in state.get("cut_epochs", [])]
