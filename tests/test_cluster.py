"""Sweeps on clusters: hydra-submitit-launcher's jobs, the SLURM preset's sbatch script,
SLURM's tasks as the ranks of one training, and a preempted job requeued to continue.

No SLURM here: the jobs run through submitit's local launcher (its own processes, with its
timeout signal and requeue), and the SLURM launcher's script is the one it hands to a
stand-in ``sbatch`` on PATH.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import (
    CPU,
    QUICK,
    RCNNEXP,
    REPO,
    assert_one_line_error,
    assert_same_run,
    cli_env,
    hparams_table,
    job_dir,
    run_cli,
    train_run,
    wait_for,
)

from rcnnexp.cli import compose
from rcnnexp.engine.cluster import PORTS, use_slurm_environment
from rcnnexp.engine.resume import deferred_interrupts

LOCAL = "hydra/launcher=submitit_local"


# -- sweeps through the submitit launcher ---------------------------------------------------------
def test_a_sweep_through_the_submitit_launcher_runs_both_jobs_and_sums_them_up(
        tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "-m", LOCAL, "trainer.seed=0,1", *QUICK, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for job in ("0_trainer.seed=0", "1_trainer.seed=1"):  # named in the job's own process
        assert json.loads((sweep / job / "results.json").read_text())["test_top1"] is not None
    assert f"sweep done: 2 jobs, all finished ({sweep})" in proc.stdout
    assert "1_trainer.seed=1" in proc.stdout  # the summary's table, from the jobs' records
    differs = [key for key, differs in hparams_table(sweep).columns if differs]
    assert differs == ["trainer.seed"], "the sweep's HPARAMS table is missing"


@pytest.mark.slow  # 14 s; a local sweep's failed job is in make test (test_cli)
def test_a_failed_job_of_a_submitit_sweep_is_named_and_fails_the_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "-m", LOCAL, "trainer.batch_size=128,100000", *QUICK[:3],
                   "trainer.progress=false", CPU, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sweep done: 1 of 2 jobs failed" in proc.stderr
    assert "#1 (trainer.batch_size=100000" in proc.stderr
    assert "trainer.batch_size=100000 is larger than" in proc.stderr
    assert (job_dir(sweep, 0) / "results.json").is_file()


# -- the SLURM preset -------------------------------------------------------------------------
def stand_in_slurm(folder: Path) -> Path:
    """``sbatch`` and ``srun`` that submit nothing: sbatch keeps the script it is given in
    ``folder/script.sh`` and refuses it, as sbatch does a script it cannot place."""
    folder.mkdir()
    (folder / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {folder / "script.sh"}\n'
                                   'echo "sbatch: error: a stand-in sbatch (tests)" >&2\nexit 1\n')
    (folder / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sbatch", "srun"):
        (folder / tool).chmod(0o755)
    return folder


def test_the_slurm_preset_asks_sbatch_for_its_nodes_gpus_time_signal_and_requeue(
        tmp_path: Path) -> None:
    bin_dir = stand_in_slurm(tmp_path / "bin")
    sweep = tmp_path / "sweep"
    asked = ["hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=4",
             "hydra.launcher.partition=gpu"]
    proc = run_cli("train", "-m", "cluster=slurm", "trainer.seed=0,1", *asked,
                   f"hydra.sweep.dir={sweep}",
                   env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode != 0 and "a stand-in sbatch (tests)" in proc.stderr, proc.stderr
    script = (bin_dir / "script.sh").read_text().splitlines()
    preset = compose(["cluster=slurm", *asked], hydra_node=True).hydra.launcher
    for directive in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4",
                      "--partition=gpu", f"--cpus-per-task={preset.cpus_per_task}",
                      f"--time={preset.timeout_min}", f"--mem-per-gpu={preset.mem_per_gpu}",
                      f"--signal=USR2@{preset.signal_delay_s}", "--requeue",
                      "--array=0-1%2"):  # both jobs in one array, both at once
        assert f"#SBATCH {directive}" in script, "\n".join(script)


def test_cluster_slurm_makes_a_requeued_job_continue_its_run() -> None:
    cfg = compose(["cluster=slurm"], hydra_node=True)
    assert cfg.trainer.resume == "auto"
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "slurm"
    assert cfg.hydra.launcher.max_num_timeout > 0


def test_a_slurm_sweep_where_there_is_no_sbatch_is_refused_before_anything_is_written(
        tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "-m", "cluster=slurm", "trainer.seed=0,1",
                   f"hydra.sweep.dir={sweep}", env={"PATH": str(tmp_path)})
    assert_one_line_error(proc, "hydra/launcher=slurm", "sbatch and srun are not on PATH",
                          "hydra/launcher=submitit_local")
    assert not sweep.exists()


def test_cluster_slurm_without_m_is_refused() -> None:
    assert_one_line_error(run_cli("train", "cluster=slurm"), "cluster=slurm", "add -m")


def test_a_dry_run_of_a_slurm_sweep_lists_its_jobs_and_submits_nothing(tmp_path: Path) -> None:
    bin_dir = stand_in_slurm(tmp_path / "bin")
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "-m", "cluster=slurm", "trainer.seed=0,1", "--dry-run",
                   f"hydra.sweep.dir={sweep}",
                   env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    assert "2 jobs (dry run: nothing was run)" in proc.stdout
    assert not (bin_dir / "script.sh").exists() and not sweep.exists()


# -- SLURM's tasks as torchrun's ranks -----------------------------------------------------------
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                      "MASTER_PORT")


def slurm_task(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    """This process as a task of a SLURM job with ``variables`` (and nothing else of
    SLURM's or torchrun's); torchrun's variables are removed again after the test, however
    the code under test set them."""
    for name in TORCHRUN_VARIABLES:
        monkeypatch.setenv(name, "")  # noted by monkeypatch as absent before the test
    for name in list(os.environ):
        if name.startswith("SLURM_") or name in TORCHRUN_VARIABLES:
            monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


TWO_NODES = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "4", "SLURM_JOB_NUM_NODES": "2",
             "SLURM_JOB_NODELIST": "gpu[07-08]"}


def test_a_task_of_a_two_node_slurm_job_gets_its_rank_and_the_first_node_as_master(
        monkeypatch: pytest.MonkeyPatch) -> None:
    slurm_task(monkeypatch, **TWO_NODES, SLURM_NODEID="1", SLURM_PROCID="3", SLURM_LOCALID="1")
    use_slurm_environment()
    assert {k: os.environ[k] for k in TORCHRUN_VARIABLES if k != "MASTER_PORT"} == {
        "RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "gpu07"}
    port = os.environ["MASTER_PORT"]
    assert int(port) in PORTS
    # rank 0, on the other node, agrees on the port without being told
    slurm_task(monkeypatch, **TWO_NODES, SLURM_NODEID="0", SLURM_PROCID="0", SLURM_LOCALID="0")
    use_slurm_environment()
    assert (os.environ["RANK"], os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]) == (
        "0", "gpu07", port)


def test_a_master_port_the_job_sets_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    slurm_task(monkeypatch, **TWO_NODES, SLURM_PROCID="2", SLURM_LOCALID="0",
               MASTER_PORT="29555")
    assert use_slurm_environment()["MASTER_PORT"] == "29555"


def test_torchrun_inside_a_slurm_job_and_a_one_task_job_are_left_as_they_are(
        monkeypatch: pytest.MonkeyPatch) -> None:
    slurm_task(monkeypatch, **TWO_NODES, SLURM_PROCID="3", SLURM_LOCALID="1", RANK="5",
               WORLD_SIZE="8")
    assert use_slurm_environment() == {}
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"]) == ("5", "8")
    slurm_task(monkeypatch, SLURM_JOB_ID="7", SLURM_NTASKS="1", SLURM_PROCID="0",
               SLURM_LOCALID="0", SLURM_JOB_NODELIST="gpu01")
    assert use_slurm_environment() == {}
    assert "RANK" not in os.environ


# -- preemption: the job stops at a step, saves, is requeued and continues ---------------------
def test_submitits_preemption_signal_asks_training_to_stop_and_reaches_submitit_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While training, USR2 only asks the trainer to stop (at a step it can save); the
    handler it had before (submitit's, which requeues the job and exits) gets it once the
    stop's checkpoint is written (pass_on), not in the middle of a step."""
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    requeued: list[int] = []
    before = signal.signal(signal.SIGUSR2, lambda signum, _frame: requeued.append(signum))
    try:
        with deferred_interrupts() as stop:
            os.kill(os.getpid(), signal.SIGUSR2)
            assert stop.signum == signal.SIGUSR2 and requeued == []
        stop.pass_on()
        assert requeued == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, before)


def test_a_sigterm_stop_is_not_passed_on() -> None:
    """SIGTERM's earlier handler (the CLI's, which ends the command) is not called after a
    stop: the run's own message and exit code stand."""
    ended: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _frame: ended.append(signum))
    try:
        with deferred_interrupts() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
        stop.pass_on()
        assert stop.signum == signal.SIGTERM and ended == []
    finally:
        signal.signal(signal.SIGTERM, before)


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (Linux's /proc)."""
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    return children + [d for c in children for d in descendants(c)]


def submitit_task(pid: int) -> int:
    """The process in which submitit runs the job of a sweep that ``pid`` launched."""
    for child in descendants(pid):
        if b"submitit.core._submit" in Path(f"/proc/{child}/cmdline").read_bytes():
            return child
    raise AssertionError(f"no submitit task under process {pid}")


@pytest.mark.slow
def test_a_preempted_submitit_job_is_requeued_and_ends_as_an_uninterrupted_run(
        tmp_path: Path) -> None:
    """submitit's preemption signal (USR2) mid-training: the trainer stops at the next step
    and writes last.pt, submitit requeues the job, which continues in the same directory
    (trainer.resume=auto) and ends where a run never interrupted ends."""
    args = (*QUICK[:2], "trainer.epochs=20", "trainer.batch_size=128", "trainer.progress=false",
            CPU)
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([*RCNNEXP, "train", "-m", LOCAL, "trainer.resume=auto", *args,
                             f"hydra.sweep.dir={sweep}"], cwd=REPO, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for(sweep / "0" / "checkpoints" / "last.pt", proc)  # epoch 1 is done
    os.kill(submitit_task(proc.pid), signal.SIGUSR2)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "sweep done: 1 jobs, all finished" in out
    log = (sweep / "0" / "train.log").read_text()
    assert "interrupted by SIGUSR2" in log and "resumed from" in log, log[-3000:]
    train_run(tmp_path / "uninterrupted", *args)
    assert_same_run(sweep / "0", tmp_path / "uninterrupted")
