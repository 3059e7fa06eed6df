"""A run's stages: one training, or RCNN's two (tune on a validation split, then retrain).

Liang & Hu tune on part of the training images (CIFAR-10: the last 10,000 are the
validation set), dividing the learning rate by 10 whenever validation accuracy stops
improving, and then retrain on *all* 50,000 training images; their CIFAR-10 test errors
are the retrained models'. The paper states this for CIFAR-10 only and does not say how the
retraining schedules its rate. Ours (the ``rcnn`` recipes turn it on for every dataset, so
that every row is measured alike): the retraining starts from scratch and replays stage 1's
cuts at the same *epochs*, so with 25 % more images an epoch (CIFAR) it takes 25 % more
steps before each cut. With ``trainer.retrain=true`` one ``rcnnexp train`` does both, in one
run directory:

    <run dir>/tune/         stage 1: train on train, validate on val (checkpoints, tb/,
                            metrics.csv, results.json of its own)
    <run dir>/              stage 2: train on train + val for stage 1's number of epochs,
                            with the learning rate set as stage 1 set it epoch by epoch
                            (a plateau schedule's cuts replayed as a step schedule); its
                            results.json is the run's, with stage 1's under ``tune``

Each stage starts from the run's seed, so stage 2 is the same whether it follows stage 1
in one process or starts after a restart between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class Stage:
    """One training of a run: where it writes, and what it trains on and for how long."""

    name: str  # "train" (a run's only stage), "tune" or "retrain"
    directory: Path  # its checkpoints/, tb/, metrics.csv and results.json
    merge_validation: bool = False  # train on train + val, keep no validation split
    # retrain: stage 1's results, which set this stage's epochs and learning rates
    tune: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return {"tune": "stage 1 of 2 (tune on the validation split)",
                "retrain": "stage 2 of 2 (retrain on all training images)"}.get(self.name, "")

    def epochs(self, configured: int) -> int:
        """How long this stage trains: as configured, or (retrain) as long as stage 1 did."""
        return configured if self.tune is None else int(self.tune["epochs"])

    def schedule(self, configured: DictConfig) -> DictConfig:
        """The learning-rate schedule: as configured, or (retrain) stage 1's replayed."""
        if self.tune is None or self.tune.get("schedule_replay") is None:
            return configured
        return OmegaConf.create(self.tune["schedule_replay"])

    def with_tune(self, tune: dict[str, Any]) -> Stage:
        return Stage(self.name, self.directory, self.merge_validation, tune)


def plan_stages(run_dir: Path, retrain: bool) -> list[Stage]:
    """The stages of a run in ``run_dir``; the last one's results are the run's."""
    if not retrain:
        return [Stage("train", run_dir)]
    return [Stage("tune", run_dir / "tune"), Stage("retrain", run_dir, merge_validation=True)]


def stage_results(tune: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """The run's results.json after two stages: stage 2's numbers, stage 1's under ``tune``."""
    return {**final, "tune": {k: v for k, v in tune.items() if k != "tune"}}


__all__ = ["Stage", "plan_stages", "stage_results"]
