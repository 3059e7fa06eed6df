"""Faults of a training run: nothing it wrote is lost, and nothing goes wrong silently.

A kill between two checkpoint writes, a damaged checkpoint, a diverging loss: each ends in
one line that says what happened and what to do, and the files a later run relies on
(last.pt, best.pt, results.json) say the truth about the run.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from conftest import (
    SMALL_RUN,
    assert_clean_error,
    assert_same_run,
    compose_config,
    flip_a_byte,
    one_torch_thread,
    run_cli,
    train_in_process,
    train_run,
)

import rcnnexp.engine.trainer as trainer_module
from rcnnexp.config import validate
from rcnnexp.engine.resume import Interrupted
from rcnnexp.engine.schedules import Schedule
from rcnnexp.errors import ConfigError


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def epoch_of(path: Path) -> int:
    return torch.load(path, weights_only=True)["state"]["epoch"]


@pytest.mark.parametrize(("epochs", "killed_at_copy"), [(1, 1), (3, 2)])
def test_a_kill_between_last_pt_and_best_pt_is_mended_on_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backends_restored: None,
        epochs: int, killed_at_copy: int) -> None:
    """Killed after last.pt was written and before it was copied to best.pt: best.pt is
    missing (epochs=1) or an epoch behind (epochs=3, whose epoch 2 is its best); the resumed
    run must leave a best.pt of the epoch results.json calls best."""
    run_dir = tmp_path / "run"
    copies = []
    real_copy = trainer_module.copy_checkpoint

    def killed_copy(src: Path, dst: Path) -> None:
        copies.append(src)
        if len(copies) == killed_at_copy:
            raise Interrupted(signal.SIGKILL)
        real_copy(src, dst)

    monkeypatch.setattr(trainer_module, "copy_checkpoint", killed_copy)
    with pytest.raises(SystemExit):
        train_in_process(run_dir, f"trainer.epochs={epochs}")
    monkeypatch.undo()
    killed_epoch = epoch_of(run_dir / "checkpoints" / "last.pt")
    train_in_process(run_dir, f"trainer.epochs={epochs}", "trainer.resume=auto")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["best_epoch"] == killed_epoch  # the precondition: the kill hit the best
    best = run_dir / "checkpoints" / "best.pt"
    assert epoch_of(best) == results["best_epoch"]
    if killed_epoch == epochs:  # then last.pt holds the best epoch too
        last = weights(run_dir / "checkpoints" / "last.pt")
        assert all(torch.equal(v, last[k]) for k, v in weights(best).items())


def test_a_diverging_run_stops_with_one_line_and_keeps_the_last_finite_checkpoint(
        tmp_path: Path) -> None:
    # measured: with this rate (warmed up over 2 epochs) epoch 1 ends finite, epoch 2 is NaN
    run_dir = tmp_path / "run"
    proc = run_cli("train", *SMALL_RUN, "trainer.epochs=2", "schedule=constant",
                   "schedule.warmup_epochs=2", "optim.lr=2e4", f"hydra.run.dir={run_dir}")
    assert_clean_error(proc, "training loss is nan in epoch 2", "diverged", "optim.lr",
                       "last.pt keeps epoch 1")
    assert proc.returncode == 1
    assert not (run_dir / "results.json").exists()
    for name in ("last.pt", "best.pt"):
        path = run_dir / "checkpoints" / name
        assert epoch_of(path) == 1
        assert all(torch.isfinite(v).all() for v in weights(path).values())


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_a_learning_rate_that_is_not_finite_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"optim\.lr must be"):
        validate(compose_config([f"optim.lr={value}"]))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    train_run(run_dir, *SMALL_RUN, "trainer.epochs=1")
    return run_dir


def test_a_flipped_byte_in_last_pt_is_refused_by_resume_and_eval(finished: Path,
                                                                 tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    for name in ("last.pt", "best.pt"):
        (run_dir / "checkpoints" / name).write_bytes((finished / "checkpoints" / name)
                                                     .read_bytes())
    last, best = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    flip_a_byte(last)
    proc = run_cli("eval", f"checkpoint={last}", f"output={tmp_path / 'eval.json'}")
    assert_clean_error(proc, "fails its CRC check", f"{best} (epoch 1) is intact")
    assert not (tmp_path / "eval.json").exists()
    proc = run_cli("train", *SMALL_RUN, "trainer.epochs=2", "trainer.resume=auto",
                   f"hydra.run.dir={run_dir}")
    assert_clean_error(proc, "fails its CRC check", f"trainer.resume={best}")
    assert not (run_dir / "results.json").exists()


def test_a_checkpoint_with_only_its_format_is_refused_by_eval(tmp_path: Path) -> None:
    path = tmp_path / "format-only.pt"
    torch.save({"format": "rcnnexp-checkpoint"}, path)
    assert_clean_error(run_cli("eval", f"checkpoint={path}"), "incomplete: it has no model")


@pytest.fixture(scope="module")
def whole_in_process(tmp_path_factory: pytest.TempPathFactory,
                     backends_restored: None) -> Path:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    with one_torch_thread():  # as the test's own runs (one_thread): bit for bit
        train_in_process(run_dir, "trainer.epochs=2")
    return run_dir


@pytest.mark.parametrize(("sig", "step", "epoch", "batch"), [
    (signal.SIGINT, 5, 0, 5),  # inside the first epoch, before any epoch's checkpoint
    (signal.SIGTERM, 50, 1, 11),  # epochs have 39 steps: step 50 is batch 11 of epoch 2
])
def test_an_interrupt_inside_an_epoch_resumes_from_its_batch_bit_identically(
        whole_in_process: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], sig: signal.Signals, step: int, epoch: int,
        batch: int) -> None:
    run_dir = tmp_path / "run"
    real_step = Schedule.step

    def schedule_step(self: Schedule) -> float:
        lr = real_step(self)
        if self.iteration == step:  # the signal arrives in the middle of step `step`
            os.kill(os.getpid(), sig)
        return lr

    monkeypatch.setattr(Schedule, "step", schedule_step)
    with pytest.raises(SystemExit) as stopped:
        train_in_process(run_dir, "trainer.epochs=2")
    monkeypatch.undo()
    assert stopped.value.code == 128 + sig
    assert "continue with: rcnnexp train" in capsys.readouterr().err
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert (state["epoch"], state["batch"], state["step"]) == (epoch, batch, step)
    train_in_process(run_dir, "trainer.epochs=2", "trainer.resume=auto")
    assert_same_run(whole_in_process, run_dir)  # TensorBoard's steps included: no duplicates
