"""Bad input, through the installed CLI: one ``error:`` line, exit 2, nothing written.

Every command keeps the same contract (README: a bad config is one line and exit 2); a
refused run leaves no trace, so repeating the command once it is fixed just works.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import (
    CPU,
    QUICK,
    RCNNEXP,
    REPO,
    assert_one_line_error,
    cli_env,
    compose_config,
    in_process,
    pretend_torch,
    run_cli,
    start_train,
    wait_for,
)

from rcnnexp.config import validate
from rcnnexp.config.trainer import TrainerConfig
from rcnnexp.engine.acceleration import check_compile
from rcnnexp.engine.rundir import lock_run_dir
from rcnnexp.errors import ConfigError

# (override, what the one line must name): Hydra printed 5-25 lines for each, exit 1
BAD_OVERRIDES = [
    ("model=foo", ["model=foo", "no option 'foo'", "rcnn, recnet"]),
    ("model.Kx=3", ["model.Kx is not a key of model", "did you mean model.K?"]),
    ("trainer.epochs=abc", ["trainer.epochs=abc", "could not be converted to Integer"]),
    ("trainer.device=tpu", ["trainer.device=tpu", "expected one of [auto, cpu, cuda]"]),
    ("dataset.download=maybe", ["dataset.download=maybe", "not a valid bool",
                                "true or false"]),
    ("optim.fused=maybe", ["optim.fused=maybe", "true, false or null"]),
    ("model=recnett", ["model=recnett", "did you mean recnet?"]),
    ("trainer.epoch=3", ["trainer.epoch is not a key of trainer",
                         "did you mean trainer.epochs?"]),
    ("trainr.epochs=3", ["trainr is not a key", "did you mean trainer?"]),
    ("model.K=[1", ["cannot parse the override 'model.K=[1'"]),
]


@pytest.mark.parametrize(("override", "needles"), BAD_OVERRIDES)
def test_train_refuses_a_bad_override_in_one_line(override: str, needles: list[str],
                                                  run_dir: Path, capsys) -> None:
    assert_one_line_error(in_process(capsys, "train", override, f"hydra.run.dir={run_dir}"),
                          *needles)
    assert not run_dir.exists()


def test_a_compiled_deterministic_run_is_refused_on_a_torch_before_2_14(
        run_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend_torch(monkeypatch, "2.11.0+cu130")  # the lent GPU's torch
    proc = in_process(capsys, "train", *QUICK, "trainer.compile=default",
                      f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, "trainer.compile=default",
                          "trainer.deterministic=null (on for cpu)", "torch 2.11.0+cu130",
                          "trainer.compile=off", "trainer.deterministic=false", "torch >= 2.14")
    assert not run_dir.exists()


@pytest.mark.parametrize(("overrides", "option", "package"), [
    (["search=rcnn_mnist"], "hydra/sweeper=optuna", "hydra-optuna-sweeper"),
    (["cluster=slurm"], "hydra/launcher=submitit_slurm", "hydra-submitit-launcher"),
])
def test_a_sweep_on_a_plugin_that_is_not_installed_names_the_package(
        overrides: list[str], option: str, package: str, run_dir: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    group, _, name = option.partition("=")
    hide_plugin_option(monkeypatch, group, name)  # as on a Python without the package
    proc = in_process(capsys, "train", "-m", *overrides, "model.K=8",
                      f"hydra.sweep.dir={run_dir}")
    assert_one_line_error(proc, option, f"pip install {package}")
    assert not run_dir.exists()


def hide_plugin_option(monkeypatch: pytest.MonkeyPatch, group: str, name: str) -> None:
    """Take the option a Hydra plugin registered out of Hydra's ConfigStore for this test
    (the plugins are imported first, so that Hydra's scan does not register it again); where
    the package is not installed, there is nothing to take."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()
    options = ConfigStore.instance().repo
    for part in group.split("/"):
        options = options[part]
    monkeypatch.delitem(options, f"{name}.yaml", raising=False)  # where it is installed


def trainer(*overrides: str) -> TrainerConfig:
    return validate(compose_config(list(overrides))).trainer


def test_only_a_compiled_run_that_is_deterministic_needs_torch_2_14(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_torch(monkeypatch, "2.11.0")
    check_compile(trainer("trainer.compile=off"), "cpu")
    check_compile(trainer("trainer.compile=default", "trainer.deterministic=false"), "cpu")
    check_compile(trainer("trainer.compile=reduce_overhead"), "cuda")  # null: off on CUDA
    with pytest.raises(ConfigError, match=r"trainer.deterministic=true needs torch >= 2\.14"):
        check_compile(trainer("trainer.compile=reduce_overhead", "trainer.deterministic=true"),
                      "cuda")
    pretend_torch(monkeypatch, "2.14.1+cu130")
    check_compile(trainer("trainer.compile=default", "trainer.deterministic=true"), "cpu")


def test_the_installed_command_keeps_the_contract(run_dir: Path) -> None:
    proc = run_cli("train", "trainer.epoch=3", f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, "did you mean trainer.epochs?")
    assert not run_dir.exists()


@pytest.mark.parametrize(("override", "needles"), BAD_OVERRIDES[:5])
def test_info_and_eval_word_a_bad_override_as_train_does(override: str, needles: list[str],
                                                         quick_checkpoint: Path, capsys) -> None:
    assert_one_line_error(in_process(capsys, "info", override), *needles)
    assert_one_line_error(in_process(capsys, "eval", f"checkpoint={quick_checkpoint}", override),
                          *needles)


@pytest.mark.parametrize("written", ["+trainer.epoch=3", "++trainer.epoch=3", "+foo=1",
                                     "+model.depth=3"])
def test_a_key_no_schema_has_is_refused_however_it_is_written(written: str, run_dir: Path,
                                                              capsys) -> None:
    key = written.lstrip("+").partition("=")[0]
    proc = in_process(capsys, "train", *QUICK, written, f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, f"{key} is not a key")
    assert not run_dir.exists()
    assert_one_line_error(in_process(capsys, "info", written), f"{key} is not a key")


def test_a_sweep_with_an_unknown_key_runs_no_job(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    proc = in_process(capsys, "train", "-m", "model.K=8,12", "+trainer.epoch=3",
                   f"hydra.sweep.dir={sweep}")
    assert_one_line_error(proc, "trainer.epoch is not a key", "did you mean trainer.epochs?")
    assert not sweep.exists()


def test_a_schema_key_cannot_be_deleted(run_dir: Path, capsys) -> None:
    proc = in_process(capsys, "train", "~trainer.epochs", f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, "~trainer.epochs", "trainer.epochs=VALUE")


def test_a_seed_out_of_range_is_named(run_dir: Path, capsys) -> None:
    proc = in_process(capsys, "train", *QUICK, "trainer.seed=99999999999999999999",
                   f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, "trainer.seed must be an integer from 0 to")
    assert not run_dir.exists()


# -- run directories that cannot be written ------------------------------------------------------
def _blocked_dirs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    return {
        "proc": (Path("/proc/rcnnexp-test/run"), "No such file or directory"),
        "under a file": (a_file / "run", f"{a_file} is a file, not a folder"),
        "is a file": (a_file, "it is a file, not a folder"),
        "long name": (tmp_path / ("x" * 300), "File name too long"),
    }


@pytest.mark.parametrize("case", ["proc", "under a file", "is a file", "long name"])
def test_a_run_directory_that_cannot_be_made_is_one_line(case: str, tmp_path: Path,
                                                         capsys) -> None:
    where, why = _blocked_dirs(tmp_path)[case]
    proc = in_process(capsys, "train", *QUICK, f"hydra.run.dir={where}")
    assert_one_line_error(proc, f"hydra.run.dir={where}", why)


@pytest.mark.skipif(sys.platform != "linux" or Path("/sys/rcnnexp-test").exists(),
                    reason="sysfs refuses new folders, even to root")
def test_an_unwritable_run_directory_is_one_line(capsys) -> None:
    proc = in_process(capsys, "train", *QUICK, "hydra.run.dir=/sys/rcnnexp-test/run")
    assert_one_line_error(proc, "hydra.run.dir=/sys/rcnnexp-test/run", "cannot write")


@pytest.mark.parametrize("output", ["/proc/rcnnexp-test/x.json", "{tmp}/a_file/x.json"])
def test_eval_refuses_an_output_it_cannot_write_before_evaluating(
        output: str, quick_checkpoint: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "a_file").write_text("not a folder\n")
    output = output.format(tmp=tmp_path)
    proc = in_process(capsys, "eval", f"checkpoint={quick_checkpoint}", f"output={output}")
    assert_one_line_error(proc, f"output={output}", "cannot write there")
    assert "top-1" not in proc.stdout  # refused before the evaluation, not after


# -- refused runs leave nothing behind -----------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_run_refused_for_its_device_leaves_no_directory(run_dir: Path, capsys) -> None:
    for _ in range(2):  # the same refusal again, not "already holds a run"
        proc = in_process(capsys, "train", *QUICK, "trainer.device=cuda",
                          f"hydra.run.dir={run_dir}")
        assert_one_line_error(proc, "trainer.device=cuda, but no CUDA device")
        assert not run_dir.exists()


def test_a_run_refused_for_missing_data_leaves_no_directory(run_dir: Path, tmp_path: Path,
                                                            capsys) -> None:
    for _ in range(2):
        proc = in_process(capsys, "train", *QUICK, "dataset=mnist",
                          f"dataset.root={tmp_path / 'none'}", "dataset.download=false",
                          f"hydra.run.dir={run_dir}")
        assert_one_line_error(proc, "MNIST not found")
        assert not run_dir.exists()


def test_a_refused_resume_leaves_the_run_it_refused_as_it_was(quick_checkpoint: Path) -> None:
    run_dir = quick_checkpoint.parent.parent
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    proc = run_cli("train", *QUICK, "model.K=12", "trainer.resume=auto",
                   f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2 and "another config" in proc.stderr
    assert "model.K: 8 -> 12" in proc.stderr
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after.keys() - {run_dir / ".lock"} == before.keys() - {run_dir / ".lock"}
    assert all(after[p] == before[p] for p in before if p.name != ".lock")
    assert not (run_dir / ".hydra.1").exists()


# -- one process per run directory ---------------------------------------------------------------
LONG = ("model.K=8", "model.T=1", "trainer.epochs=40", "trainer.batch_size=32",
        "trainer.progress=false", CPU)


@pytest.mark.slow  # a run must reach its first checkpoint: ~45 s on a loaded 2-core CPU
def test_a_second_process_is_refused_while_a_run_trains_its_directory(run_dir: Path) -> None:
    first = start_train([*LONG, f"hydra.run.dir={run_dir}"])
    try:
        wait_for(run_dir / "checkpoints" / "last.pt", first)
        log_before = (run_dir / "train.log").read_text()
        proc = run_cli("train", *LONG, "trainer.resume=auto", f"hydra.run.dir={run_dir}")
        assert_one_line_error(proc, f"run directory {run_dir} is in use by another rcnnexp "
                              f"process (pid {first.pid})")
        assert first.poll() is None, "the refusal must not disturb the run"
        assert not (run_dir / ".hydra.1").exists()
        assert (run_dir / "train.log").read_text().startswith(log_before)
        assert "in use" not in (run_dir / "train.log").read_text()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert lock_run_dir(run_dir) is not None  # kill -9 leaves no stale lock


# -- signals before training ---------------------------------------------------------------------
@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGINT, 130, "Ctrl-C"),
                                                    (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_during_start_up_ends_in_one_line(sig: signal.Signals, code: int, name: str,
                                                   run_dir: Path) -> None:
    proc = subprocess.Popen([*RCNNEXP, "train", *QUICK, f"hydra.run.dir={run_dir}"],
                            cwd=REPO, env=cli_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # the moment torch is being loaded: well inside start-up, long before the first epoch
    maps = Path(f"/proc/{proc.pid}/maps")
    while proc.poll() is None and "libtorch" not in maps.read_text():
        time.sleep(0.01)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert_one_line_error(result, f"interrupted by {name}", code=code)
    assert not (run_dir / "checkpoints").exists()


def test_an_interrupt_after_the_last_epoch_names_no_epoch_beyond_it(run_dir: Path) -> None:
    """metrics.csv gets the last epoch's row just before its checkpoints are saved: a Ctrl-C
    then used to report "interrupted in epoch 4" of a 3-epoch run."""
    proc = start_train(["model.K=8", "model.T=1", "trainer.epochs=3", "trainer.progress=false",
                        f"hydra.run.dir={run_dir}"])
    metrics = run_dir / "metrics.csv"
    wait_for(metrics, proc)
    while proc.poll() is None and len(metrics.read_text().splitlines()) < 4:
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out
    assert "epoch 4" not in out and "Traceback" not in out
    assert "after the last epoch (3)" in out or "interrupted by Ctrl-C" in out
