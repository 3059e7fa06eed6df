"""RCNN's protocol as one run: tune on the validation split, then retrain on all images.

``trainer.retrain=true`` trains twice in one run directory (``tune/`` then the directory
itself); stage 2 trains on train + val for stage 1's epochs with stage 1's learning-rate
cuts, and its test numbers are the run's.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
from conftest import (
    CPU,
    assert_clean_error,
    assert_same_run,
    compose_config,
    in_process,
    read_csv,
    run_cli,
    scalars,
    start_train,
    train_run,
    wait_for,
)

from rcnnexp.config import validate
from rcnnexp.sweep import job_results

# RCNN-8 on the digits, the plateau schedule cutting after any epoch without a better val (at
# a rate high enough for some of those)
STAGES = ("model.K=8", "model.T=1", "trainer.batch_size=32", "optim.lr=0.05",
          "trainer.retrain=true",
          "schedule=plateau", "schedule.patience=0", "schedule.max_reductions=2",
          "schedule.stop_when_exhausted=true", "trainer.epochs=8", "trainer.progress=false",
          CPU)
DIGITS_TRAIN, DIGITS_VAL = 1259, 179


@pytest.fixture(scope="module")
def two_stages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("stages") / "run"
    train_run(run_dir, *STAGES)
    return run_dir


def lr_cuts(rows: list[dict[str, str]]) -> list[int]:
    """The epochs after which the learning rate went down (from metrics.csv's lr column)."""
    lrs = [float(r["lr"]) for r in rows]
    return [i + 1 for i in range(len(lrs) - 1) if lrs[i + 1] < lrs[i] * 0.99]


def test_retraining_reports_stage_2_and_keeps_stage_1(two_stages: Path) -> None:
    results = json.loads((two_stages / "results.json").read_text())
    tune = results["tune"]
    assert (results["stage"], tune["stage"]) == ("retrain", "tune")
    assert tune == json.loads((two_stages / "tune" / "results.json").read_text())
    # stage 2 learns from every training image, for as many epochs as stage 1 ran
    assert (tune["train_images"], results["train_images"]) == (
        DIGITS_TRAIN, DIGITS_TRAIN + DIGITS_VAL)
    assert results["epochs"] == tune["epochs"] == len(read_csv(two_stages / "metrics.csv"))
    # the run's numbers are the retrained model's, after its last epoch
    last = read_csv(two_stages / "metrics.csv")[-1]
    assert results["test_top1"] == pytest.approx(float(last["test_top1"]))
    assert "val_top1" not in last and results["best_val_top1"] is None
    assert tune["best_val_top1"] is not None


def test_a_two_stage_run_is_listed_with_its_tuning_stage_validation(
        two_stages: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tune_val = json.loads((two_stages / "results.json").read_text())["tune"]["best_val_top1"]
    assert job_results(two_stages)["best_val_top1"] == tune_val  # a sweep's table of jobs
    report = tmp_path / "report"
    assert in_process(capsys, "report", str(two_stages), f"out={report}").returncode == 0
    [row] = read_csv(report / "runs.csv")  # the report's table of runs
    assert float(row["best_val_top1"]) == pytest.approx(tune_val)


def test_stage_2_replays_the_learning_rate_cuts_of_stage_1(two_stages: Path) -> None:
    tune_cuts = lr_cuts(read_csv(two_stages / "tune" / "metrics.csv"))
    assert tune_cuts, "stage 1 made no cut: the test would show nothing"
    replay = json.loads((two_stages / "results.json").read_text())["tune"]["schedule_replay"]
    assert replay["milestones"] == tune_cuts
    assert lr_cuts(read_csv(two_stages / "metrics.csv")) == tune_cuts


def test_both_stages_show_in_tensorboard(two_stages: Path) -> None:
    for tb in (two_stages / "tune" / "tb", two_stages / "tb"):
        tags = scalars(tb)
        assert "train/lr" in tags and "test/top1" in tags
    assert "val/top1" in scalars(two_stages / "tune" / "tb")


@pytest.mark.parametrize("stage_file", [  # stage 2's kill (28 s) in make test-slow
    "tune/checkpoints/last.pt", pytest.param("checkpoints/last.pt", marks=pytest.mark.slow)])
def test_a_run_killed_in_either_stage_resumes_to_the_same_end(two_stages: Path, tmp_path: Path,
                                                              stage_file: str) -> None:
    run_dir = tmp_path / "run"
    proc = start_train([*STAGES, f"hydra.run.dir={run_dir}"])
    wait_for(run_dir / stage_file, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "results.json").exists(), "the run ended before it was killed"
    resumed = run_cli("train", *STAGES, f"hydra.run.dir={run_dir}", "trainer.resume=auto")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert_same_run(two_stages / "tune", run_dir / "tune")
    assert_same_run(two_stages, run_dir)


def test_a_run_stopped_between_the_stages_starts_stage_2_on_resume(two_stages: Path,
                                                                    tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(two_stages, run_dir)
    for written_by_stage_2 in ("checkpoints", "tb", "metrics.csv", "results.json"):
        target = run_dir / written_by_stage_2
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    resumed = run_cli("train", *STAGES, f"hydra.run.dir={run_dir}", "trainer.resume=auto")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "stage 2 of 2" in resumed.stdout and "stage 1 of 2" not in resumed.stdout
    assert_same_run(two_stages, run_dir)


def test_retraining_needs_a_validation_split(tmp_path: Path) -> None:
    proc = run_cli("train", *STAGES, "dataset.val_fraction=0", f"hydra.run.dir={tmp_path}/r")
    assert_clean_error(proc, "trainer.retrain=true", "validation split")


@pytest.mark.parametrize(("preset", "retrain"), [
    ("rcnn/t2_rcnn96", True), ("rcnn/t3_rcnn160", True), ("rcnn/t4_rcnn32", True),
    ("rcnn/t5_rcnn192", True), ("recnet/t3_60_640", False), ("crnn/t4_all", False)])
def test_rcnn_rows_retrain_and_one_key_switches_it_off(preset: str, retrain: bool) -> None:
    assert validate(compose_config([f"experiment={preset}"])).trainer.retrain is retrain
    off = compose_config([f"experiment={preset}", "trainer.retrain=false"])
    assert validate(off).trainer.retrain is False
