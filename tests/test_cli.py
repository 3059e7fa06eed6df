"""End to end through the installed ``rcnnexp`` console script, in subprocesses."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import (
    CPU,
    QUICK,
    assert_clean_error,
    assert_one_line_error,
    assert_same_run,
    hparams_table,
    job_dir,
    read_csv,
    run_cli,
    scalars,
    start_train,
    wait_for,
)

from rcnnexp.engine.resume import resume_hint
from rcnnexp.sweep import folder_naming_override, job_folder

RESULT_KEYS = {"model", "dataset", "params", "epochs", "best_epoch", "test_top1", "test_top5",
               "best_val_top1", "wall_s", "images_per_s"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path_factory.mktemp("quick") / "run"
    proc = run_cli("train", *QUICK, "trainer.epochs=2", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run_dir, proc


def test_help_lists_the_commands() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("train", "eval", "info"):
        assert f"  {command} " in proc.stdout


def test_unknown_command_is_refused() -> None:
    assert_clean_error(run_cli("fit"), "unknown command 'fit'", "train, eval, info")


def test_cfg_job_prints_the_composed_config() -> None:
    proc = run_cli("train", "--cfg", "job", "model.K=48")
    assert proc.returncode == 0
    assert "K: 48" in proc.stdout and "_target_: rcnnexp.models.rcnn.RCNN" in proc.stdout


def test_quick_run_writes_a_complete_run_directory(quick_run) -> None:
    run_dir, proc = quick_run
    assert f"run directory: {run_dir}" in proc.stdout
    assert f"tensorboard --logdir {run_dir}" in proc.stdout
    assert "epoch   2 |" in proc.stdout  # plain lines when not on a terminal
    results = json.loads((run_dir / "results.json").read_text())
    assert results.keys() >= RESULT_KEYS
    assert results["model"] == "rcnn" and results["dataset"] == "digits"
    assert results["params"] == 4_938 and results["epochs"] == 2
    assert 0 <= results["test_top1"] <= results["test_top5"] <= 100
    rows = read_csv(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert next(iter(rows[0])) == "epoch"
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "train.log").is_file()
    for name in ("last.pt", "best.pt"):
        state = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert state["state"]["epoch"] == (2 if name == "last.pt" else results["best_epoch"])


def test_tensorboard_has_curves_and_hparams(quick_run) -> None:
    run_dir, _ = quick_run
    tags = scalars(run_dir / "tb")
    steps = 2 * (1259 // 128)
    # once per trainer.log_every (10) steps, with the other step-level scalars
    assert [s for s, _ in tags["train/lr"]] == list(range(10, steps + 1, 10))
    for tag in ("train/loss", "train/top1", "val/top1", "val/top5", "test/top1", "test/top5",
                "time/images_per_s", "time/epoch_time_s"):
        assert tag in tags, tag
    assert not [t for t in tags if t.startswith("hparams/")]  # no one-point charts
    # results.json's numbers are points on their curves, in the final sub-run
    results = json.loads((run_dir / "results.json").read_text())
    final = scalars(run_dir / "tb" / "final")
    assert final.keys() <= tags.keys()
    assert final["test/top1"] == [(steps, pytest.approx(results["test_top1"]))]
    [row] = hparams_table(run_dir).rows.values()
    assert (row["model"], row["dataset"], row["model.K"]) == ("rcnn", "digits", "8")
    assert row["optim.lr"] == pytest.approx(0.01)  # the digits' rate


def test_a_directory_with_a_run_is_never_overwritten(quick_run) -> None:
    run_dir, _ = quick_run
    before = {p: p.read_bytes() for p in (run_dir / "results.json",
                                          run_dir / ".hydra" / "config.yaml")}
    proc = run_cli("train", *QUICK, f"hydra.run.dir={run_dir}")
    assert_clean_error(proc, "already holds a run", "trainer.resume=auto")
    assert {p: p.read_bytes() for p in before} == before


def test_eval_reproduces_the_best_epochs_test_accuracy(quick_run, tmp_path: Path) -> None:
    run_dir, _ = quick_run
    out = tmp_path / "eval.json"
    proc = run_cli("eval", f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}",
                   f"output={out}")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.read_text())
    results = json.loads((run_dir / "results.json").read_text())
    assert metrics["top1"] == pytest.approx(results["test_top1"], abs=1e-9)
    assert metrics["top5"] == pytest.approx(results["test_top5"], abs=1e-9)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["split"] == "test"
    # the default output goes beside the run, never over an earlier file
    proc = run_cli("eval", f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}", "split=val")
    assert proc.returncode == 0, proc.stderr
    assert len(list((run_dir / "eval").glob("last-val-*.json"))) == 1


def test_eval_refuses_a_checkpoint_of_another_model(quick_run) -> None:
    run_dir, _ = quick_run
    proc = run_cli("eval", f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}", "model.K=12")
    assert_clean_error(proc, "another model", "other shapes")


@pytest.mark.parametrize("content", [None, b"garbage" * 100])
def test_eval_missing_or_corrupt_checkpoint(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    proc = run_cli("eval", f"checkpoint={path}")
    assert_clean_error(proc, str(path), "does not exist" if content is None else "corrupt")


def test_info_prints_a_table_and_a_json_summary() -> None:
    proc = run_cli("info", "model.K=32", "model.T=3")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["params"] == 75_018  # RCNN-32 on 1-channel input: the paper's MNIST count
    assert summary["flops"] > 0 and summary["input"] == [1, 8, 8]
    assert "features.rcl1" in proc.stdout


SWEEP_QUICK = tuple(a for a in QUICK if not a.startswith("model.K="))


def test_sweep_runs_each_job_and_reports_the_failed_one(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "-m", "model.K=0,8", *SWEEP_QUICK, f"hydra.sweep.dir={sweep}")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "1 of 2 jobs failed" in proc.stderr and "model.K must be positive" in proc.stderr
    # each job's folder: its number and its swept value, none of the keys all jobs share
    assert not (sweep / "0_model.K=0" / "results.json").exists()
    results = json.loads((sweep / "1_model.K=8" / "results.json").read_text())
    assert results["epochs"] == 1
    assert (sweep / "1_model.K=8" / ".hydra" / "overrides.yaml").is_file()
    # the summary's table: the job that finished first, the failed one last and marked
    table = [line.split() for line in proc.stdout.splitlines()[-3:-1]]
    assert table == [["#1", "K=8", f"{results['test_top1']:.2f}",
                      f"{results['best_val_top1']:.2f}", "1", "1_model.K=8"],
                     ["#0", "K=0", "failed", "-", "-", "0_model.K=0"]]


def test_a_job_folder_is_its_number_then_its_swept_values_safe_for_a_path() -> None:
    assert job_folder(3, "") == "3"  # a job no value tells apart (a sweep of one)
    assert job_folder(0, "model.K=32,trainer.seed=1") == "0_model.K=32,trainer.seed=1"
    assert job_folder(1, "experiment=rcnn/t4_rcnn32") == "1_experiment=rcnn-t4_rcnn32"
    assert job_folder(2, "model.d=[5,5,5],name='a b*'") == "2_model.d=5-5-5,name=a-b-"
    # a search's draws, rounded; the folder name cut where it grows too long for one
    assert job_folder(5, "optim.lr=0.003515207314851794,trainer.batch_size=16") == (
        "5_optim.lr=0.003515,trainer.batch_size=16")
    long = job_folder(4, ",".join(f"optimizer.key{n}=0.00123456" for n in range(9)))
    assert len(long.encode()) < 130 and long.endswith("...")
    assert long.startswith("4_optimizer.key0=0.00123456,optimizer.key1=")


def test_only_the_keys_that_tell_a_sweeps_jobs_apart_name_its_folders() -> None:
    jobs = [["table=rcnn/t4", "experiment=rcnn/t4_rcnn32", "trainer.seed=0", "hydra.sweep.dir=x"],
            ["table=rcnn/t4", "experiment=rcnn/t4_rcnn64", "trainer.seed=0", "hydra.sweep.dir=x"],
            ["table=rcnn/t4", "experiment=rcnn/t4_rcnn64", "trainer.seed=1", "hydra.sweep.dir=x",
             "+model.extra=1"]]
    assert folder_naming_override(jobs) == (
        "hydra.job.config.override_dirname.exclude_keys=['table']")


def test_a_job_that_crashes_is_reported_and_the_sweep_finishes(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    models = "model._target_=crashing_model.CrashingRCNN,rcnnexp.models.rcnn.RCNN"
    proc = run_cli("train", "-m", models, "model.K=8", *SWEEP_QUICK, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    # the crash is named when it happens and in the summary, its traceback kept in its log
    assert "1 of 2 jobs failed" in proc.stderr, proc.stderr
    summary = proc.stderr.split("1 of 2 jobs failed")[1]
    assert "#0 (model._target_=crashing_model.CrashingRCNN" in summary
    assert "RuntimeError: the test model crashed in training" in summary
    assert "Traceback" in (job_dir(sweep, 0) / "train.log").read_text()
    # the job after it ran to the end, and the sweep says where to look at both
    assert json.loads((job_dir(sweep, 1) / "results.json").read_text())["epochs"] == 1
    assert proc.stdout.count("tensorboard --logdir") == 1
    assert f"tensorboard --logdir {sweep}\n" in proc.stdout


def test_a_crashing_single_run_shows_its_error_and_no_callback_warning(tmp_path: Path) -> None:
    proc = run_cli("train", "model._target_=crashing_model.CrashingRCNN", *QUICK,
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 1
    assert "RuntimeError: the test model crashed in training" in proc.stderr
    assert "Callback" not in proc.stderr and "MissingMandatoryValue" not in proc.stderr


@pytest.mark.parametrize(("args", "needles"), [
    (["model=resnet"], ["model=resnet", "no option 'resnet'", "the options are", "rcnn"]),
    (["dataset=imagenette"], ["dataset=imagenette", "no option 'imagenette'", "digits"]),
    (["model.depth=3"], ["model.depth is not a key of model", "the keys are"]),
    (["trainer.epochs=ten"], ["trainer.epochs", "could not be converted to Integer"]),
    (["trainer.epochs=0"], ["trainer.epochs must be positive, got 0"]),
    (["model.K=-4"], ["model.K must be positive, got -4"]),
    (["trainer.batch_size=0"], ["trainer.batch_size must be positive, got 0"]),
    (["trainer.batch_size=5000"], ["larger than the 1259 training images"]),
    (["schedule=cosine_restarts", "schedule.restarts=[5,3]"],
     ["schedule.restarts must be strictly increasing, got [5, 3]"]),
    (["schedule=cosine_restarts", "trainer.epochs=50"],
     ["schedule.restarts [20, 60, 120] must lie before the last epoch (trainer.epochs=50)"]),
    (["trainer.device=cuda"] if not torch.cuda.is_available() else ["trainer.epochs=-1"],
     ["trainer.device=cuda, but no CUDA device"] if not torch.cuda.is_available()
     else ["trainer.epochs must be positive"]),
])
def test_bad_input_gets_a_clear_message(args: list[str], needles: list[str],
                                        tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli("train", *args, "trainer.progress=false", f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, *needles)
    assert not run_dir.exists()


RESUME_ARGS = ("model.K=8", "model.T=1", "trainer.epochs=5", "trainer.batch_size=32",
               "trainer.progress=false", CPU)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    proc = run_cli("train", *RESUME_ARGS, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run_dir


def test_resume_after_kill_9_equals_an_uninterrupted_run(uninterrupted: Path,
                                                         tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start_train([*RESUME_ARGS, f"hydra.run.dir={run_dir}"])
    wait_for(run_dir / "checkpoints" / "last.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "results.json").exists(), "the run ended before it was killed"
    resumed = run_cli("train", *RESUME_ARGS, f"hydra.run.dir={run_dir}",
                      "trainer.resume=auto")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stdout
    assert_same_run(uninterrupted, run_dir)
    assert (run_dir / ".hydra.1" / "overrides.yaml").is_file()  # the first start is kept


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_stop_cleanly_and_resume(uninterrupted: Path, tmp_path: Path,
                                                    sig: signal.Signals, code: int) -> None:
    run_dir = tmp_path / "run"
    proc = start_train([*RESUME_ARGS, f"hydra.run.dir={run_dir}"])
    wait_for(run_dir / "checkpoints" / "last.pt", proc)
    proc.send_signal(sig)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == code, out
    assert "Traceback" not in out
    assert "trainer.resume=auto" in out and f"hydra.run.dir={run_dir}" in out
    resumed = run_cli("train", *RESUME_ARGS, f"hydra.run.dir={run_dir}", "trainer.resume=auto")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_same_run(uninterrupted, run_dir)


def test_resume_from_a_path_and_refusals(uninterrupted: Path, tmp_path: Path) -> None:
    last = uninterrupted / "checkpoints" / "last.pt"
    # a checkpoint of another configuration: named differences, nothing written
    proc = run_cli("train", *RESUME_ARGS, "model.K=12", f"trainer.resume={last}",
                   f"hydra.run.dir={tmp_path / 'other'}")
    assert_clean_error(proc, "another config", "model.K: 8 -> 12", "model.K=8")
    assert not (tmp_path / "other" / "checkpoints").exists()
    proc = run_cli("train", *RESUME_ARGS, f"trainer.resume={tmp_path / 'none.pt'}",
                   f"hydra.run.dir={tmp_path / 'x'}")
    assert_clean_error(proc, "no checkpoint there")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    proc = run_cli("train", *RESUME_ARGS, f"trainer.resume={bad}",
                   f"hydra.run.dir={tmp_path / 'y'}")
    assert_clean_error(proc, "corrupt")
    # from a path, with more epochs: continues the run in a new directory
    proc = run_cli("train", *RESUME_ARGS[:2], "trainer.epochs=6", *RESUME_ARGS[3:],
                   f"trainer.resume={last}", f"hydra.run.dir={tmp_path / 'longer'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["epoch"] for r in read_csv(tmp_path / "longer" / "metrics.csv")] == [
        "1", "2", "3", "4", "5", "6"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_on_cpu(tmp_path: Path, precision: str) -> None:
    run = tmp_path / "run"
    proc = run_cli("train", *QUICK, f"trainer.precision={precision}", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["precision"] == precision and results["device"] == "cpu"
    assert 0.0 < results["train_loss"] < 10.0


def test_the_resume_hint_is_a_command_the_shell_runs_as_given() -> None:
    hint = resume_hint(["name=my run", "model.K=8", "trainer.resume=auto"], Path("out/a b"),
                       resumable=True)
    assert hint == ("continue with: rcnnexp train 'name=my run' model.K=8 trainer.resume=auto "
                    "'hydra.run.dir=out/a b'")
    assert shlex.split(hint.removeprefix("continue with: "))[2] == "name=my run"
