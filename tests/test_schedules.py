"""Learning-rate schedules: the rate at chosen iterations, restarts, plateaus, resume."""

from __future__ import annotations

import math

import pytest
import torch

from rcnnexp.engine.schedules import (
    ConstantSchedule,
    CosineRestartsSchedule,
    PlateauSchedule,
    StepSchedule,
)

IPE = 10  # iterations per epoch


def optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def lrs(schedule, n: int) -> list[float]:
    return [schedule.step() for _ in range(n)]


def test_cosine_restarts_back_to_the_maximum_at_each_restart() -> None:
    """RecNet: restarts at 20, 60, 120 of 200 epochs, i.e. cycles of 20/40/60/80."""
    s = CosineRestartsSchedule(optimizer(0.1), IPE, 200, restarts=[20, 60, 120])
    rates = lrs(s, 200 * IPE)
    for restart in (0, 20, 60, 120):
        assert rates[restart * IPE] == pytest.approx(0.1)
    # halfway through each cycle the cosine is at half the maximum
    for start, length in ((0, 20), (20, 40), (60, 60), (120, 80)):
        assert rates[(start + length // 2) * IPE] == pytest.approx(0.05)
    # just before a restart the rate is near zero, and it decreases within a cycle
    assert rates[20 * IPE - 1] < 1e-3 and rates[200 * IPE - 1] < 1e-5
    assert all(a >= b for a, b in zip(rates[60 * IPE:120 * IPE - 1],
                                      rates[60 * IPE + 1:120 * IPE], strict=True))


def test_cosine_without_restarts_and_min_lr() -> None:
    s = CosineRestartsSchedule(optimizer(1.0), IPE, 10, min_lr=0.1)
    rates = lrs(s, 100)
    assert rates[0] == pytest.approx(1.0)
    assert rates[50] == pytest.approx(0.1 + 0.9 * 0.5)
    assert rates[25] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_step_divides_at_milestones() -> None:
    s = StepSchedule(optimizer(1.0), IPE, 10, milestones=[3, 6], factor=10)
    rates = lrs(s, 100)
    assert rates[29] == 1.0 and rates[30] == pytest.approx(0.1)
    assert rates[59] == pytest.approx(0.1) and rates[60] == pytest.approx(0.01)


def test_linear_warmup_then_the_schedule() -> None:
    s = ConstantSchedule(optimizer(0.4), IPE, 10, warmup_epochs=2, warmup_start=0.0)
    rates = lrs(s, 30)
    assert rates[0] == 0.0 and rates[10] == pytest.approx(0.2) and rates[20] == 0.4


def test_plateau_divides_by_ten_at_most_three_times() -> None:
    """RCNN: /10 whenever validation accuracy stops improving, three times (1/1000)."""
    s = PlateauSchedule(optimizer(1.0), IPE, 100, patience=1, max_reductions=3,
                        stop_when_exhausted=True)
    seen = []
    for value in [50, 60, 60, 60, 61, 61, 61, 61, 61, 61, 61, 61]:
        seen.append(s.step())
        s.on_eval({"val_top1": value})
    assert seen[:4] == [1.0, 1.0, 1.0, 1.0]
    assert s.reductions == 3 and s.step() == pytest.approx(1e-3)
    assert s.should_stop


def test_plateau_minimises_losses() -> None:
    s = PlateauSchedule(optimizer(1.0), IPE, 100, monitor="train_loss", patience=0)
    s.on_eval({"train_loss": 1.0})
    s.on_eval({"train_loss": 0.5})
    assert s.reductions == 0
    s.on_eval({"train_loss": 0.7})
    assert s.reductions == 1


def test_a_plateau_at_the_last_epoch_cuts_nothing_and_leaves_nothing_to_replay() -> None:
    """A cut after the last epoch would reach no epoch; RCNN's retraining stage replays the
    cuts that stage 1 listed, so such a cut must not be listed either."""
    s = PlateauSchedule(optimizer(1.0), IPE, 3, patience=0)
    for value in (50, 60, 55):  # epoch 3, the last, is worse than epoch 2
        lrs(s, IPE)
        s.on_eval({"val_top1": value})
    assert s.reductions == 0 and s.replay()["milestones"] == []
    s = PlateauSchedule(optimizer(1.0), IPE, 3, patience=0)
    for value in (50, 45, 60):  # epoch 2 is worse than epoch 1: a cut after it
        lrs(s, IPE)
        s.on_eval({"val_top1": value})
    assert s.reductions == 1 and s.replay()["milestones"] == [2]


def test_state_dict_round_trip_continues_identically() -> None:
    a = PlateauSchedule(optimizer(1.0), IPE, 10, patience=0)
    lrs(a, 15)
    a.on_eval({"val_top1": 1.0})
    a.on_eval({"val_top1": 0.5})
    b = PlateauSchedule(optimizer(1.0), IPE, 10, patience=0)
    b.load_state_dict(a.state_dict())
    assert lrs(a, 20) == lrs(b, 20)
