"""scripts/gpu_check.sh, the first contact with a GPU, dry-run on this machine: its stages
fail or skip cleanly where CUDA is absent, the script goes on to the next, the summary says
which, and a stage the budget cannot fit is skipped rather than cut short."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, cli_env


def gpu_check(*args: str) -> subprocess.CompletedProcess[str]:
    """``bash scripts/gpu_check.sh ARGS`` with this interpreter as $PYTHON."""
    return subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), *args], cwd=REPO,
                          env=cli_env({"PYTHON": sys.executable}), text=True,
                          capture_output=True, timeout=120, check=False)


def stage_lines(out: Path) -> dict[str, list[str]]:
    """summary.txt's stage lines: stage -> [status, seconds, why]."""
    lines = (out / "summary.txt").read_text().splitlines()
    assert lines[0].startswith("# gpu_check") and lines[-1].startswith("# done"), lines
    return {name: rest for name, *rest in (line.split("\t") for line in lines[1:-1])}


def test_a_stage_the_budget_cannot_fit_is_skipped(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = gpu_check("--only", "env,smoke", "--budget", "20", "--out", str(out))
    stages = stage_lines(out)
    assert list(stages) == ["setup", "env", "smoke"]
    assert stages["env"][0] == ("passed" if torch.cuda.is_available() else "failed")
    status, seconds, why = stages["smoke"]
    assert (status, seconds) == ("skipped", "0s") and "it needs 45 s" in why
    assert (out / "env.log").is_file() and not (out / "smoke.log").exists()
    assert proc.returncode == (0 if torch.cuda.is_available() else 1), proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run of a machine without CUDA")
def test_without_cuda_each_gpu_stage_fails_cleanly_and_the_next_one_runs(
        tmp_path: Path) -> None:
    out, mnist = tmp_path / "out", tmp_path / "mnist"
    mnist.mkdir()
    proc = gpu_check("--only", "env,smoke,mnist", "--mnist", str(mnist), "--out", str(out))
    stages = stage_lines(out)
    assert stages["env"][0] == "failed" and "no CUDA device" in stages["env"][2]
    assert stages["smoke"][0] == "failed" and "no CUDA device" in stages["smoke"][2]
    assert stages["mnist"][0] == "skipped" and "holds no train-images-idx3-ubyte" in \
        stages["mnist"][2]
    assert "Traceback" not in (out / "smoke.log").read_text()
    assert proc.returncode == 1
    assert "# done" in proc.stdout and "2 stage(s) failed" in proc.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (["--only", "env,nonsense"], "no stage nonsense; the stages: env, smoke"),
    (["--budget", "-5"], "--budget must be a positive number of seconds"),
    (["--mnist", "/no/such/folder"], "--mnist /no/such/folder: no such folder"),
])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                               needle: str) -> None:
    proc = gpu_check(*args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and needle in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_interpreter_is_pythons_never_the_venvs(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": str(tmp_path / "no-python")}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], cwd=REPO, env=env,
                          text=True, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"gpu_check.sh: no Python at PYTHON={tmp_path}/no-python; "
                                   "name one whose torch is installed")
