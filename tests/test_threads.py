"""trainer.threads: how many CPU threads a run's kernels use, chosen so that a run on a
machine shared with other work slows down with the load instead of collapsing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import QUICK, USERS_THREADS, assert_one_line_error, in_process, run_cli

from rcnnexp.engine import threads
from rcnnexp.engine.threads import SPLIT_MIN_FLOPS, choose_threads

SMALL_STEP, BIG_STEP = SPLIT_MIN_FLOPS / 4, SPLIT_MIN_FLOPS * 4


@pytest.fixture
def four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell on a machine of four usable cores, without OMP_NUM_THREADS or torchrun."""
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    for name in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


def test_a_step_too_small_to_split_runs_on_one_thread(four_cores: None) -> None:
    assert choose_threads(None, SMALL_STEP, "cpu").count == 1


def test_a_big_step_takes_every_core_the_process_may_use(four_cores: None) -> None:
    assert choose_threads(None, BIG_STEP, "cpu").count == 4


def test_the_processes_torchrun_starts_on_a_machine_share_its_cores(
        four_cores: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert choose_threads(None, BIG_STEP, "cpu").count == 2


def test_omp_num_threads_is_the_users_choice_and_trainer_threads_wins_over_it(
        four_cores: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads(None, SMALL_STEP, "cpu").count == 3
    assert choose_threads(2, SMALL_STEP, "cpu").count == 2


def test_a_cgroup_cpu_quota_caps_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    """``docker --cpus=1.5``: the affinity mask still lists every core of the host."""
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    monkeypatch.setattr(threads, "CGROUP_V2_QUOTA", quota)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(64)))
    assert threads.usable_cores() == 2
    quota.write_text("max 100000\n")
    assert threads.usable_cores() == 64


def test_a_run_says_and_records_the_threads_it_chose(tmp_path: Path) -> None:
    proc = run_cli("train", *QUICK, f"hydra.run.dir={tmp_path / 'run'}", env=USERS_THREADS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "on cpu, 1 thread (a step of" in proc.stderr + proc.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (results["threads"], results["processes"], results["backend"]) == (1, 1, None)


def test_zero_threads_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(in_process(capsys, "train", *QUICK, "trainer.threads=0"),
                          "trainer.threads", "0")


BUSY = "import time\nend = time.time() + 600\nwhile time.time() < end: pass"


def timed_default_run(run_dir: Path) -> float:
    start = time.perf_counter()
    proc = run_cli("train", "trainer.progress=false", "trainer.device=cpu", "trainer.epochs=10",
                   f"hydra.run.dir={run_dir}", timeout=900, env=USERS_THREADS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return time.perf_counter() - start


@pytest.mark.slow
def test_the_default_run_next_to_two_busy_processes_takes_at_most_three_times_as_long(
        tmp_path: Path) -> None:
    """On a 2-core machine, two CPU-bound processes beside the default run: with torch's
    default of a thread per core it took over ten times as long (docs/performance.md)."""
    idle = timed_default_run(tmp_path / "idle")
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
    try:
        loaded = timed_default_run(tmp_path / "loaded")
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    assert loaded <= 3 * idle, (idle, loaded)
