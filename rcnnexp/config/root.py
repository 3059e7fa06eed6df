"""The top-level schema: one field per config group, plus what describes the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING

from rcnnexp.config.checks import require
from rcnnexp.config.finetune import FinetuneConfig
from rcnnexp.config.trainer import TrainerConfig


class PaperMetric(str, Enum):
    """How a paper's table reports a row, in percent on the test split (results.json keys)."""

    test_error = "test_error"  # 100 - top-1 accuracy (RCNN; C-RNN's top-1 error on ILSVRC)
    test_top5_error = "test_top5_error"  # 100 - top-5 accuracy (C-RNN on ILSVRC)
    test_top1 = "test_top1"  # top-1 accuracy (RecNets; C-RNN on SUN397, MIT Indoor)
    test_top5 = "test_top5"


class OptimizedMetric(str, Enum):
    """What a search's sweeper maximises (``optimized_metric``, conf/search): validation
    numbers only, so that choosing a value never looks at the test split."""

    best_val_top1 = "best_val_top1"  # results.json's: the best epoch's validation top-1


@dataclass
class PaperValue:
    """One number of a table row: on which dataset option, in which metric."""

    dataset: str = MISSING  # the dataset option the number was measured on, e.g. cifar100
    metric: PaperMetric = MISSING
    value: float = MISSING


@dataclass
class PaperResult:
    """A paper's table row that an experiment reproduces, and the numbers it reports.

    A row can report several numbers: RecNets' rows one per CIFAR, C-RNN's Table 1 rows a
    top-1 and a top-5 error. A run is compared with those of its own dataset option.
    """

    paper: str = MISSING  # RCNN | C-RNN | RecNets
    table: str = MISSING  # as the paper numbers it: "2", "2b", ...
    row: str = MISSING  # the row's label in that table
    values: list[PaperValue] = MISSING
    # the row's parameter count as the paper prints it (471K: 471000), where it prints one
    params: int | None = None
    # the decimals the paper reports its numbers to (all three papers: two), to which the
    # report prints them and our interval
    decimals: int = 2

    def __post_init__(self) -> None:
        require(len(self.values) > 0, f"paper.values of {self.paper} table {self.table} row "
                f"{self.row!r} must list at least one number")


@dataclass
class Config:
    name: str = "run"  # a label for the run: results.json and TensorBoard's HPARAMS tab
    model: Any = MISSING
    dataset: Any = MISSING
    optim: Any = MISSING
    schedule: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    paper: PaperResult | None = None  # set by experiment presets that reproduce a table row
    # the results.json key a sweeper optimises (conf/search: best_val_top1): a job then
    # returns that number to it; null: the job returns its whole results
    optimized_metric: OptimizedMetric | None = None

    def __post_init__(self) -> None:
        # an empty label names nothing in results.json or TensorBoard's HPARAMS tab
        require(self.name.strip() != "", f"name={self.name!r} is empty: give the run a label "
                "(e.g. name=baseline), or leave name out for the default, run")
