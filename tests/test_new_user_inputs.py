"""What a new user types wrong (issue 19), through the CLI: one ``error:`` line naming the
key and what would be right, exit 2, and nothing written where the command was refused."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import (
    QUICK,
    assert_one_line_error,
    in_process,
    read_csv,
    train_in_process,
    write_run_files,
)

from rcnnexp.data.digits import Digits
from rcnnexp.engine.schedules import Schedule


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.mark.parametrize("written", ["hydra.run.dir=", "hydra.run.dir=''"])
def test_an_empty_run_directory_is_refused_not_taken_for_the_current_folder(
        written: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    proc = in_process(capsys, "train", *QUICK, written)
    assert_one_line_error(proc, "hydra.run.dir= is empty", "hydra.run.dir=outputs/NAME")
    assert files_under(tmp_path) == []


def test_an_empty_sweep_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys) -> None:
    monkeypatch.chdir(tmp_path)
    proc = in_process(capsys, "train", "-m", *QUICK, "model.K=8,12", "hydra.sweep.dir=")
    assert_one_line_error(proc, "hydra.sweep.dir= is empty")
    assert files_under(tmp_path) == []


def test_an_empty_name_is_refused(run_dir: Path, capsys) -> None:
    proc = in_process(capsys, "train", *QUICK, "name=", f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, "name='' is empty", "name=baseline")
    assert not run_dir.exists()


@pytest.mark.parametrize(("dataset", "shape"), [("mnist", "1x28x28 images, 10 classes"),
                                                ("cifar100", "3x32x32 images, 100 classes")])
def test_a_checkpoint_is_not_evaluated_on_data_of_another_shape(
        dataset: str, shape: str, quick_checkpoint: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "eval.json"
    proc = in_process(capsys, "eval", f"checkpoint={quick_checkpoint}", f"dataset={dataset}",
                      f"dataset.root={tmp_path / 'none'}", f"output={output}")
    assert_one_line_error(proc, f"checkpoint={quick_checkpoint}",
                          "Digits data (1x8x8 images, 10 classes)", shape)
    assert not output.exists()


def test_report_names_each_run_it_skips_and_why(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    write_run_files(runs / "good", ["experiment=rcnn/t4_rcnn32"], dataset="mnist",
                    test_top1=99.0, test_error=1.0)
    for name, text in [("corrupt", '{"dataset": "mnist", "test_to'), ("foreign", '{"acc": 0.9}'),
                       ("a_list", "[1, 2]")]:
        (runs / name).mkdir()
        (runs / name / "results.json").write_text(text)
    out = tmp_path / "report"
    proc = in_process(capsys, "report", str(runs), f"out={out}")
    assert proc.returncode == 0, proc.stderr
    warnings = proc.stderr.splitlines()
    assert len(warnings) == 3 and all(w.startswith("warning: skipped ") for w in warnings)
    why = {Path(w.split()[2].rstrip(":")).name: w for w in warnings}
    assert "not valid JSON" in why["corrupt"]
    assert "no 'dataset' or 'overrides'" in why["foreign"]
    assert "a JSON list" in why["a_list"]
    assert (out / "README.md").is_file()


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A file where a folder is asked for."""
    path = tmp_path / "a_file"
    path.write_text("not a folder\n")
    return path


def test_a_sweep_directory_that_cannot_be_made_is_one_line(a_file: Path, capsys) -> None:
    proc = in_process(capsys, "train", "-m", *QUICK, "model.K=8,12",
                      f"hydra.sweep.dir={a_file / 'sweep'}")
    assert_one_line_error(proc, f"hydra.sweep.dir={a_file / 'sweep'}",
                          f"{a_file} is a file, not a folder")


def test_a_report_folder_that_cannot_be_made_is_one_line(a_file: Path, tmp_path: Path,
                                                         capsys) -> None:
    write_run_files(tmp_path / "runs" / "run", ["experiment=rcnn/t4_rcnn32"], dataset="mnist",
                    test_top1=99.0, test_error=1.0)
    proc = in_process(capsys, "report", str(tmp_path / "runs"), f"out={a_file / 'report'}")
    assert_one_line_error(proc, f"out={a_file / 'report'}", f"{a_file} is a file, not a folder")


# -- a refused run writes nothing ----------------------------------------------------------------
def test_a_missing_finetune_checkpoint_is_refused_before_the_run_directory_is_made(
        run_dir: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "none.pt"
    proc = in_process(capsys, "train", *QUICK, f"finetune.checkpoint={missing}",
                      f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, f"checkpoint {missing} does not exist")
    assert not run_dir.exists()


def test_a_part_the_model_lacks_is_refused_before_the_run_directory_is_made(
        quick_checkpoint: Path, run_dir: Path, capsys) -> None:
    proc = in_process(capsys, "train", *QUICK, f"finetune.checkpoint={quick_checkpoint}",
                      "finetune.trainable=[rnn]", f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, "finetune.trainable names ['rnn']")
    assert not run_dir.exists()


def test_a_refused_eval_leaves_no_empty_eval_folder(quick_checkpoint: Path, capsys) -> None:
    proc = in_process(capsys, "eval", f"checkpoint={quick_checkpoint}", "dataset.views=grid9")
    assert_one_line_error(proc, "dataset.views=grid9")
    assert not (quick_checkpoint.parent.parent / "eval").exists()


# -- arguments the command line does not take as they are --------------------------------------
@pytest.mark.parametrize(("args", "needles"), [
    (["foo"], ["'foo' is neither key=value nor a flag", "key=value"]),
    (["mnist"], ["'mnist' is neither key=value nor a flag", "did you mean dataset=mnist?"]),
    (["--cfg", "job", "foo"], ["'foo' is neither key=value nor a flag"]),
])
def test_an_argument_that_is_not_an_override_is_named(args: list[str], needles: list[str],
                                                      run_dir: Path, capsys) -> None:
    proc = in_process(capsys, "train", *args, f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, *needles)
    assert not run_dir.exists()
    assert_one_line_error(in_process(capsys, "info", *args), *needles)


@pytest.mark.parametrize("command", ["eval", "info", "report"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_prints_its_usage_for_help(command: str, flag: str, capsys) -> None:
    proc = in_process(capsys, command, flag)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith(f"usage: rcnnexp {command}")


@pytest.mark.parametrize(("args", "needles"), [
    (["experiment=rcnn/t4_rcnn32", "model=recnet"],
     ["experiment=rcnn/t4_rcnn32 sets model.dropout", "model=recnet (RecNetConfig)",
      "leave out model=recnet"]),
    (["experiment=recnet/t2b_e8", "model=rcnn"],
     ["experiment=recnet/t2b_e8 sets model.e", "leave out model=rcnn"]),
])
def test_an_experiment_under_a_model_of_another_family_is_named(
        args: list[str], needles: list[str], run_dir: Path, capsys) -> None:
    assert_one_line_error(in_process(capsys, "info", *args), *needles)
    proc = in_process(capsys, "train", *args, f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, *needles)
    assert not run_dir.exists()


@pytest.mark.parametrize("written", ["+experiment=rcnn/t4_rcnn32", "++experiment=rcnn/t4_rcnn32"])
def test_an_experiment_added_with_a_plus_is_told_to_drop_it(written: str, run_dir: Path,
                                                            capsys) -> None:
    proc = in_process(capsys, "train", written, f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, f"{written}: write experiment=rcnn/t4_rcnn32, without +")
    assert not run_dir.exists()


# -- an interrupted run says how to continue, once, where the other messages go ----------------
def test_an_interrupt_says_once_on_stderr_how_to_continue(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch, backends_restored: None,
        capsys) -> None:
    real_step = Schedule.step

    def step(self: Schedule) -> float:
        lr = real_step(self)
        if self.iteration == 3:  # Ctrl-C in the middle of the first epoch
            os.kill(os.getpid(), signal.SIGINT)
        return lr

    monkeypatch.setattr(Schedule, "step", step)
    proc = in_process(capsys, "train", *QUICK, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 130
    [line] = [line for line in proc.stderr.splitlines() if "interrupted" in line]
    assert line.startswith("interrupted by Ctrl-C (SIGINT) in epoch 1; continue with: rcnnexp ")
    assert f"trainer.resume=auto hydra.run.dir={run_dir}" in line
    assert "interrupted" not in proc.stdout and "continue with" not in proc.stdout
    assert line in (run_dir / "train.log").read_text()


# -- a check run: trainer.limit_batches ---------------------------------------------------------
def test_a_check_run_takes_a_few_batches_and_its_schedule_knows_it(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch, backends_restored: None) -> None:
    schedules: list[Schedule] = []
    real_init = Schedule.__init__

    def init(self: Schedule, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        schedules.append(self)

    evaluated: list[str] = []
    real_eval_batches = Digits.eval_batches

    def eval_batches(self: Digits, split: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for batch in real_eval_batches(self, split, *args, **kwargs):
            evaluated.append(split)
            yield batch

    monkeypatch.setattr(Schedule, "__init__", init)
    monkeypatch.setattr(Digits, "eval_batches", eval_batches)
    # SMALL_RUN: 39 steps an epoch; val and test in batches of 16: 12 and 23 batches
    train_in_process(run_dir, "trainer.limit_batches=3", "trainer.epochs=2",
                     "trainer.eval_batch_size=16")
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert (state["epoch"], state["step"]) == (2, 6)
    [schedule] = schedules
    assert (schedule.iters_per_epoch, schedule.total_iters) == (3, 6)
    assert evaluated == ["val"] * 3 + ["test"] * 3 + ["val"] * 3 + ["test"] * 3
    results = json.loads((run_dir / "results.json").read_text())
    assert results["limit_batches"] == 3 and results["epochs"] == 2


def test_a_check_run_is_listed_in_the_report_but_never_counted_in_a_row(tmp_path: Path,
                                                                        capsys) -> None:
    runs = tmp_path / "runs"
    for name, seed, extra in [("real", 0, {}), ("check", 1, {"limit_batches": 2})]:
        write_run_files(runs / name, ["experiment=rcnn/t4_rcnn32", f"trainer.seed={seed}"],
                        dataset="mnist", test_top1=99.0 - seed, test_error=1.0 + seed, **extra)
    out = tmp_path / "report"
    proc = in_process(capsys, "report", str(runs), f"out={out}")
    assert proc.returncode == 0, proc.stderr
    [row] = [r for r in read_csv(out / "rows.csv") if r["preset"] == "rcnn/t4_rcnn32"]
    assert (row["n"], float(row["mean"])) == ("1", 1.0)
    readme = (out / "README.md").read_text()
    assert "(check run: 2 batches, not counted)" in readme
    assert "no table above compares" not in readme


# -- models too large to build --------------------------------------------------------------------
@pytest.mark.parametrize(("override", "needles"), [
    ("model.K=100000", ["model.K=100000 gives at least 360,000,000,000 parameters",
                        "of memory: choose a smaller model"]),
    ("model.T=100000", ["model.T=100000 is more than RCNN_MAX_T=100",
                        "choose model.T at most 100"]),
    ("model=alexnet model.fc=1000000", ["model.fc=1000000 gives at least"]),
])
def test_a_model_too_large_to_build_is_refused_before_building(
        override: str, needles: list[str], run_dir: Path, capsys) -> None:
    args = override.split()
    assert_one_line_error(in_process(capsys, "info", *args), *needles)
    proc = in_process(capsys, "train", *QUICK[2:], *args, f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, *needles)
    assert not run_dir.exists()
