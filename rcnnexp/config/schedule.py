"""Schemas of the ``schedule`` group: learning-rate schedules set every iteration.

The classes they build live in :mod:`rcnnexp.engine.schedules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rcnnexp.config.checks import increasing_epochs, non_negative, one_of, positive, require


@dataclass
class ScheduleConfig:
    _target_: str = "rcnnexp.engine.schedules.ConstantSchedule"
    warmup_epochs: float = 0.0  # linear warm-up from warmup_start * lr to lr
    warmup_start: float = 0.0  # the warm-up's first learning rate, as a fraction of lr

    def __post_init__(self) -> None:
        non_negative("schedule.warmup_epochs", self.warmup_epochs)
        require(0 <= self.warmup_start <= 1,
                f"schedule.warmup_start must be in [0, 1], got {self.warmup_start}")

    def check_epochs(self, epochs: int) -> None:
        """Checks that need ``trainer.epochs``."""
        require(self.warmup_epochs <= epochs,
                f"schedule.warmup_epochs ({self.warmup_epochs}) is longer than "
                f"trainer.epochs ({epochs})")


@dataclass
class ConstantScheduleConfig(ScheduleConfig):
    _target_: str = "rcnnexp.engine.schedules.ConstantSchedule"


@dataclass
class StepScheduleConfig(ScheduleConfig):
    _target_: str = "rcnnexp.engine.schedules.StepSchedule"
    milestones: list[int] = field(default_factory=lambda: [30, 60, 90])  # epochs of the cuts
    factor: float = 10.0  # the learning rate is divided by this at each milestone

    def __post_init__(self) -> None:
        super().__post_init__()
        increasing_epochs("schedule.milestones", self.milestones)
        positive("schedule.factor", self.factor)

    def check_epochs(self, epochs: int) -> None:
        super().check_epochs(epochs)
        require(all(m < epochs for m in self.milestones),
                f"schedule.milestones {list(self.milestones)} must lie before the last epoch "
                f"(trainer.epochs={epochs})")


@dataclass
class CosineRestartsScheduleConfig(ScheduleConfig):
    _target_: str = "rcnnexp.engine.schedules.CosineRestartsSchedule"
    restarts: list[int] = field(default_factory=list)  # epochs where lr jumps back to its max
    min_lr: float = 0.0  # the learning rate at the end of each cosine cycle

    def __post_init__(self) -> None:
        super().__post_init__()
        increasing_epochs("schedule.restarts", self.restarts)
        non_negative("schedule.min_lr", self.min_lr)

    def check_epochs(self, epochs: int) -> None:
        super().check_epochs(epochs)
        require(all(r < epochs for r in self.restarts),
                f"schedule.restarts {list(self.restarts)} must lie before the last epoch "
                f"(trainer.epochs={epochs})")


@dataclass
class PlateauScheduleConfig(ScheduleConfig):
    _target_: str = "rcnnexp.engine.schedules.PlateauSchedule"
    monitor: str = "val_top1"  # maximised for accuracies, minimised for *_loss
    factor: float = 10.0  # the learning rate is divided by this at each cut
    patience: int = 5  # evaluations without improvement before a cut
    max_reductions: int = 3  # cuts at most
    threshold: float = 0.0  # an improvement must beat the best by more than this
    stop_when_exhausted: bool = False  # end training after the last cut stops helping

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("schedule.monitor", self.monitor,
               ["val_top1", "val_top5", "val_loss", "train_top1", "train_loss"])
        positive("schedule.factor", self.factor)
        non_negative("schedule.patience", self.patience)
        non_negative("schedule.max_reductions", self.max_reductions)
