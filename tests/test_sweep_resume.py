"""A sweep run again into its folder (``trainer.resume=auto hydra.sweep.dir=...``) continues
it: finished jobs are skipped untouched, an interrupted one resumes from its checkpoint to
the end an uninterrupted job reaches, the rest run; another sweep's folder is refused."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
from pathlib import Path

import pytest
from conftest import (
    QUICK,
    SMALL_RUN,
    assert_one_line_error,
    assert_same_run,
    hparams_table,
    in_process,
    run_cli,
    start_train,
    train_in_process,
    wait_for,
)

from rcnnexp.cli import compose, name_job_folders, sweep_jobs
from rcnnexp.engine.hparams import SWEEP_HPARAMS_SUFFIX
from rcnnexp.engine.resume import RunStatus
from rcnnexp.engine.rundir import lock_run_dir
from rcnnexp.sweep_resume import Action, Job, job_directory, launches

SEEDS = "trainer.seed=0,1,2"
# each job's folder: its number and the value that tells it apart (rcnnexp.sweep.job_folder)
JOB = {n: f"{n}_trainer.seed={n}" for n in range(3)}
# three epochs a job: two left in job 1 after its first checkpoint, for the Ctrl-C to land in
SWEEP = (*SMALL_RUN, "trainer.epochs=3")


def files_of(folder: Path) -> dict[Path, tuple[int, bytes]]:
    """Every file below ``folder`` with its modification time and contents, but the sweep's
    HPARAMS table, which the sweep writes anew at its end into its first job's TensorBoard
    folder (rcnnexp.sweep.write_hparams_table)."""
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*")
            if p.is_file() and not p.name.endswith(SWEEP_HPARAMS_SUFFIX)}


def continue_command(output: str) -> list[str]:
    """The arguments of the ``continue with: rcnnexp train ...`` command an output names."""
    line = next(line for line in output.splitlines() if "continue with: " in line)
    words = shlex.split(line.split("continue with: ", 1)[1])
    assert words[:2] == ["rcnnexp", "train"], line
    return words[2:]


def test_a_sweep_interrupted_in_its_second_job_continues_where_it_stopped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], backends_restored: None) -> None:
    sweep = tmp_path / "sweep"
    proc = start_train(["-m", SEEDS, *SWEEP, f"hydra.sweep.dir={sweep}"])
    wait_for(sweep / JOB[1] / "checkpoints" / "last.pt", proc)  # job 1's first epoch is done
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGINT, out[-3000:]
    assert (sweep / JOB[0] / "results.json").is_file()
    assert not (sweep / JOB[1] / "results.json").exists() and not (sweep / JOB[2]).exists()
    # the line names the command that continues the whole sweep, not job 1 alone
    command = continue_command(out)
    assert command[0] == "-m" and SEEDS in command and "trainer.resume=auto" in command
    assert f"hydra.sweep.dir={sweep}" in command
    finished = files_of(sweep / JOB[0])

    dry = in_process(capsys, "train", *command, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    listed = [line for line in dry.stdout.splitlines() if line.startswith("#")]
    assert listed[0].endswith("-> finished: skipped")
    assert listed[1].endswith("-> interrupted: resumes from its checkpoint")
    assert "->" not in listed[2]

    rerun = run_cli("train", *command)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "1 finished before (skipped), 1 resume from their checkpoints, 1 to run" in rerun.stdout
    assert "  skipped #0 (trainer.seed=0 " in rerun.stdout
    assert "  resumes #1 (trainer.seed=1 " in rerun.stdout
    assert files_of(sweep / JOB[0]) == finished  # not trained again, not even touched
    assert "resumed from" in (sweep / JOB[1] / "train.log").read_text()
    whole = tmp_path / "whole"
    train_in_process(whole, "trainer.epochs=3", "trainer.seed=1")
    assert_same_run(sweep / JOB[1], whole)  # bit for bit, as an uninterrupted job
    assert json.loads((sweep / JOB[2] / "results.json").read_text())["seed"] == 2
    # the sweep's summary and its HPARAMS table cover all three jobs, the skipped one too
    assert f"sweep done: 3 jobs, all finished, 1 of them before this run ({sweep})" in (
        rerun.stdout)
    table = rerun.stdout.split("sweep done:")[1]
    assert all(f"  {JOB[n]}\n" in table for n in range(3))  # the jobs' table lists all three
    assert len(hparams_table(sweep).rows) == 3


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep of two quick jobs (seeds 0 and 1) that ran to its end."""
    sweep = tmp_path_factory.mktemp("finished") / "sweep"
    proc = run_cli("train", "-m", "trainer.seed=0,1", *QUICK, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return sweep


def test_a_sweep_run_again_without_resume_is_refused_and_writes_nothing(
        finished_sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = files_of(finished_sweep)
    proc = in_process(capsys, "train", "-m", "trainer.seed=0,1", *QUICK,
                      f"hydra.sweep.dir={finished_sweep}")
    assert_one_line_error(proc, f"hydra.sweep.dir={finished_sweep} already holds this sweep",
                          "2 of its 2 jobs finished", "trainer.resume=auto")
    assert files_of(finished_sweep) == before


def test_another_sweep_into_the_folders_of_a_sweep_is_refused_and_writes_nothing(
        finished_sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Folders named alike (the same seeds swept) whose jobs ran with another fixed value."""
    before = files_of(finished_sweep)
    proc = in_process(capsys, "train", "-m", "trainer.seed=0,1", *QUICK, "trainer.epochs=2",
                      "trainer.resume=auto", f"hydra.sweep.dir={finished_sweep}")
    assert_one_line_error(proc, "holds another sweep", f"job #0 ({finished_sweep / JOB[0]}) "
                          "ran trainer.epochs=1", "this sweep's #0 has trainer.epochs=2")
    assert files_of(finished_sweep) == before


def test_a_sweep_beside_another_sweeps_jobs_is_refused_and_writes_nothing(
        finished_sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder that holds a run but is none of the sweep's jobs' (seed 1's, where this
    sweep has seed 5) is another sweep's: the two are not mixed in one folder."""
    before = files_of(finished_sweep)
    proc = in_process(capsys, "train", "-m", "trainer.seed=0,5", *QUICK, "trainer.resume=auto",
                      f"hydra.sweep.dir={finished_sweep}")
    assert_one_line_error(proc, "holds runs in folders that are none of this sweep's jobs' "
                          f"({JOB[1]})", "give this one another folder")
    assert files_of(finished_sweep) == before


@pytest.mark.slow
def test_a_sweep_extended_by_a_seed_runs_only_its_new_job_through_submitit(
        finished_sweep: Path, tmp_path: Path) -> None:
    """The jobs it had keep their numbers and folders, so they are skipped as finished; the
    submitit launcher gets the new job alone, with its own number (folder 2)."""
    sweep = tmp_path / "sweep"
    shutil.copytree(finished_sweep, sweep)
    before = [files_of(sweep / JOB[n]) for n in (0, 1)]
    proc = run_cli("train", "-m", "hydra/launcher=submitit_local", SEEDS, *QUICK,
                   "trainer.resume=auto", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 finished before (skipped), 0 resume from their checkpoints, 1 to run" in proc.stdout
    assert [files_of(sweep / JOB[n]) for n in (0, 1)] == before
    assert json.loads((sweep / JOB[2] / "results.json").read_text())["seed"] == 2
    assert f"sweep done: 3 jobs, all finished, 2 of them before this run ({sweep})" in (
        proc.stdout)


def test_a_dry_run_names_the_job_whose_dataset_is_not_on_disk(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    proc = in_process(capsys, "train", "-m", "dataset=digits,mnist", f"dataset.root={data}",
                      "dataset.download=false", "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    digits, mnist = (line for line in proc.stdout.splitlines() if line.startswith("#"))
    assert "lacks data" not in digits  # embedded: nothing on disk to lack
    assert f"-> lacks data: {data / 'MNIST' / 'raw'} (no train-images-idx3-ubyte" in mnist
    assert "2 jobs, 1 lacking data (dry run: nothing was run)" in proc.stdout
    assert not data.exists()  # looked for, never fetched or made


def test_a_continued_sweep_finds_its_jobs_in_the_folders_they_were_given() -> None:
    """The folders are named by the values that tell the jobs apart; trainer.resume=auto,
    which continuing adds to every job, leaves the names as they were."""

    def folders(*args: str) -> list[Path]:
        overrides = [*args, "hydra.sweep.dir=/sweeps/a"]
        jobs = sweep_jobs(overrides, multirun=True)
        naming = name_job_folders(overrides, jobs)
        return [job_directory(compose([*job, *naming], hydra_node=True), num)
                for num, job in enumerate(jobs)]

    assert folders("model.K=8,16", "trainer.epochs=1") == folders(
        "model.K=8,16", "trainer.epochs=1", "trainer.resume=auto") == [
        Path("/sweeps/a/0_model.K=8"), Path("/sweeps/a/1_model.K=16")]


def job(num: int, status: RunStatus) -> Job:
    return Job(num, (f"trainer.seed={num}",), Path(f"/sweep/{num}"), status, resume=True,
               found=(f"trainer.seed={num}",) if status != RunStatus.NEW else None)


@pytest.mark.parametrize(("batch", "expected"), [
    (None, [(1, [1]), (3, [3, 4])]),
    (1, [(1, [1]), (3, [3]), (4, [4])]),
])
def test_a_rerun_launches_each_run_of_unfinished_jobs_under_their_own_numbers(
        batch: int | None, expected: list[tuple[int, list[int]]]) -> None:
    jobs = [job(0, RunStatus.FINISHED), job(1, RunStatus.NEW), job(2, RunStatus.FINISHED),
            job(3, RunStatus.STARTED), job(4, RunStatus.NEW)]
    assert [j.action for j in jobs] == [Action.SKIP, Action.RUN, Action.SKIP, Action.RESUME,
                                        Action.RUN]
    overrides = [[f"trainer.seed={n}"] for n in range(5)]
    assert list(launches(jobs, overrides, batch)) == [
        (start, [overrides[n] for n in nums]) for start, nums in expected]


@pytest.mark.slow  # two sweeps' starts and four submitit jobs: a minute on 2 busy cores
def test_ctrl_c_to_a_submitit_sweep_names_the_command_that_continues_it(tmp_path: Path) -> None:
    """Ctrl-C reaches the terminal's whole process group: the sweep's process, waiting on
    its launcher, and the jobs submitit runs beside it, which stop at a step and save."""
    sweep = tmp_path / "sweep"
    proc = start_train(["-m", "hydra/launcher=submitit_local", "trainer.seed=0,1", *SWEEP,
                        f"hydra.sweep.dir={sweep}"], group=True)
    wait_for(sweep / JOB[0] / "checkpoints" / "last.pt", proc)
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGINT, out[-3000:]
    assert "error: interrupted by Ctrl-C (SIGINT): the sweep stopped before it finished; " \
           "continue with: rcnnexp train -m " in out
    rerun = run_cli("train", *continue_command(out))
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "sweep done: 2 jobs, all finished" in rerun.stdout
    assert "resumed from" in (sweep / JOB[0] / "train.log").read_text()


def test_a_sweep_whose_job_still_trains_elsewhere_is_not_continued_beside_it(
        finished_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """submitit's jobs outlive the process that launched them: a job still training holds
    its folder's lock, and the sweep is not continued until it ends."""
    sweep = tmp_path / "sweep"
    shutil.copytree(finished_sweep, sweep)
    handle = lock_run_dir(sweep / JOB[1])  # as the job's own process holds it while it trains
    try:
        proc = in_process(capsys, "train", "-m", "trainer.seed=0,1", *QUICK,
                          "trainer.resume=auto", f"hydra.sweep.dir={sweep}")
    finally:
        assert handle is not None
        handle.close()
    assert_one_line_error(proc, f"job #1 ({sweep / JOB[1]}) is training in another rcnnexp "
                          f"process (pid {os.getpid()})", "wait for its jobs to end")
