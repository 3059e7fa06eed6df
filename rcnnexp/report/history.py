"""What a run's metrics.csv says per epoch, as the curves figure draws it: the error, the
training loss, the learning rate, and the epochs where the learning rate was cut.

A two-stage run (``trainer.retrain``) is drawn from its tuning stage, the one with a
validation split (its retraining stage has none); a run without a validation split, by its
test error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rcnnexp.report.runs import Run

# a cut: the learning rate divided by at least this from one epoch to the next (the plateau
# and step schedules divide by 10; a warm-up's first epochs rise)
CUT_FACTOR = 2.0
HELD = 1e-6  # relative change below which a learning rate is the same from epoch to epoch


@dataclass(frozen=True)
class Series:
    epochs: list[float]
    values: list[float]


@dataclass(frozen=True)
class Curves:
    """A run's curves, all from one stage's metrics.csv (:func:`curves`)."""

    kind: str  # what ``error`` is: validation error (of which stage), or test error
    error: Series
    train_loss: Series
    lr: Series
    cuts: list[float]  # the first epoch at each cut learning rate (:func:`lr_cuts`)


def curves(run: Run) -> Curves:
    """The run's validation error per epoch, its tuning stage's where it has one; its test
    error where it has no validation split; with the same stage's loss, rate and cuts."""
    for history, kind in ((run.tune_history, "validation error (tuning stage)"),
                          (run.history, "validation error")):
        if any("val_top1" in row for row in history):
            return _of(history, kind, "val_top1")
    return _of(run.history, "test error (no validation split)", "test_top1")


def _of(history: list[dict[str, float]], kind: str, top1: str) -> Curves:
    error = column(history, top1)
    return Curves(kind, Series(error.epochs, [100.0 - v for v in error.values]),
                  column(history, "train_loss"), column(history, "lr"), lr_cuts(history))


def column(history: list[dict[str, float]], name: str) -> Series:
    """One column of metrics.csv against the epoch, its finite values only."""
    points = [(row["epoch"], row[name]) for row in history
              if "epoch" in row and math.isfinite(row.get(name, math.nan))]
    return Series([e for e, _ in points], [v for _, v in points])


def lr_cuts(history: list[dict[str, float]]) -> list[float]:
    """The epochs whose learning rate is at most 1/CUT_FACTOR of the epoch's before and held
    on one side of the drop (the same the epoch before it, or the epoch after): a plateau or
    step schedule's cut. A cosine's tail, which shrinks by more every epoch, is no cut:
    its rate is held on neither side."""
    lr = column(history, "lr")
    rates, epochs = lr.values, lr.epochs

    def held(i: int, j: int) -> bool:
        return i >= 0 and j < len(rates) and abs(rates[j] - rates[i]) <= HELD * abs(rates[i])

    return [epochs[i] for i in range(1, len(rates))
            if rates[i] * CUT_FACTOR <= rates[i - 1] and (held(i - 2, i - 1) or held(i, i + 1))]


__all__ = ["CUT_FACTOR", "Curves", "Series", "column", "curves", "lr_cuts"]
