"""scripts/gpu_check.sh, the first contact with a GPU, dry-run on this machine: its stages
fail or skip cleanly where CUDA is absent, the script goes on to the next, the summary says
which, and a stage the budget cannot fit is skipped rather than cut short. The table4 stage
(RCNN Table 4's row at the whole protocol, run only when named) is dry-run on the CPU through
its --extra overrides: its seeds start side by side, stop at the cap each saved and packed
into one file, and continue from those files in a later call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from conftest import REPO, cli_env
from tiny_data import write_mnist


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
    (["--extra", "model.K=8"], "--extra is for the table4 stage, which is not among"),
    (["--only", "table4", "--extra", "K8"], "--extra 'K8': an override of rcnnexp train"),
    (["--only", "table4", "--extra", "trainer.seed=4"], "sets trainer.seed itself (--seeds"),
    (["--only", "table4", "--seeds", "0,0"], "--seeds '0,0': a comma-separated list of "
                                             "distinct non-negative integers"),
    (["--only", "table4", "--resume-from", "/no/such/folder"],
     "--resume-from /no/such/folder: holds no table4-seed-N.tar.gz for seeds 0,1,2"),
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


def test_table4_runs_only_when_named(tmp_path: Path) -> None:
    out = tmp_path / "out"
    gpu_check("--budget", "1", "--out", str(out))
    header = (out / "summary.txt").read_text().splitlines()[0]
    stages = header.split("stages ")[1].split(";")[0].split(",")
    assert "mnist" in stages and "table4" not in stages and "grid" not in stages


# RCNN-8 on one batch an epoch on the CPU, with no end of its own (no epoch cap reached, no
# end at the third cut): only the stage's cap stops it
TABLE4_ON_CPU = ("trainer.device=cpu", "model.K=8", "model.T=1", "trainer.limit_batches=1",
                 "schedule.stop_when_exhausted=false")
SEEDS = (0, 1, 2)


def packed(out: Path, seed: int) -> dict[str, bytes]:
    """A seed's packed run directory, member name -> bytes (files only)."""
    with tarfile.open(out / f"table4-seed-{seed}.tar.gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.fixture(scope="module")
def stopped_table4(tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """(MNIST's folder, the output folder, the call) of a table4 stage stopped at its cap."""
    root = tmp_path_factory.mktemp("table4")
    write_mnist(root / "mnist")
    out = root / "first"
    proc = gpu_check("--only", "table4", "--budget", "35", "--mnist", str(root / "mnist"),
                     "--out", str(out), "--extra", *TABLE4_ON_CPU, "trainer.epochs=100000")
    return root / "mnist", out, proc


@pytest.mark.slow
def test_table4_stops_its_three_seeds_at_the_cap_each_saved_in_one_file(
        stopped_table4: tuple[Path, Path, subprocess.CompletedProcess[str]]) -> None:
    _, out, proc = stopped_table4
    status, _, why = stage_lines(out)["table4"]
    assert (status, proc.returncode) == ("stopped", 0), proc.stdout + proc.stderr
    assert why.startswith("stopped at its cap of") and "--resume-from" in why
    for seed in SEEDS:
        assert f"seed {seed}: stopped in stage 1, " in why
        files = packed(out, seed)
        assert f"seed-{seed}/tune/checkpoints/last.pt" in files  # saved as it stopped
        assert f"seed-{seed}/results.json" not in files
        overrides = files[f"seed-{seed}/.hydra/overrides.yaml"].decode()
        for told in ("experiment=rcnn/t4_rcnn32", f"trainer.seed={seed}",
                     "trainer.precision=fp32", "trainer.tf32=false", "trainer.device=cpu"):
            assert f"- {told}\n" in overrides
        assert "trainer.device=cuda" not in overrides  # --extra replaced the stage's own
    # five files: what a lent GPU returns (at most 8, no more than 2 folders down)
    assert sorted(p.name for p in out.iterdir()) == [
        "summary.txt", *(f"table4-seed-{seed}.tar.gz" for seed in SEEDS), "table4.log"]


@pytest.mark.slow
def test_table4_resumed_from_its_files_continues_each_seed_where_it_stopped(
        stopped_table4: tuple[Path, Path, subprocess.CompletedProcess[str]],
        tmp_path: Path) -> None:
    mnist, first, _ = stopped_table4
    before = {seed: len(packed(first, seed)[f"seed-{seed}/tune/metrics.csv"].splitlines()) - 1
              for seed in SEEDS}
    out = tmp_path / "second"
    # trainer.epochs=1: stage 1, past it already, ends at once; stage 2 trains as many epochs
    proc = gpu_check("--only", "table4", "--budget", "90", "--mnist", str(mnist), "--out",
                     str(out), "--resume-from", str(first), "--extra", *TABLE4_ON_CPU,
                     "trainer.epochs=1")
    status, _, why = stage_lines(out)["table4"]
    assert (status, proc.returncode) == ("passed", 0), why
    for seed in SEEDS:
        files = packed(out, seed)
        assert "resumed from" in files[f"seed-{seed}/train.log"].decode()
        results = json.loads(files[f"seed-{seed}/results.json"])
        assert results["tune"]["epochs"] >= max(before[seed], 2)  # continued, not restarted
        assert results["epochs"] == results["tune"]["epochs"]  # stage 2: as many epochs
        assert f"seed {seed}: done, test error" in why


def test_an_output_folder_holding_table4_runs_is_never_overwritten(
        stopped_table4: tuple[Path, Path, subprocess.CompletedProcess[str]]) -> None:
    mnist, out, _ = stopped_table4
    before = (out / "table4-seed-0.tar.gz").read_bytes()
    proc = gpu_check("--only", "table4", "--mnist", str(mnist), "--out", str(out))
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"--out {out} already holds table4 runs (table4-seed-0.tar.gz)" in proc.stderr
    assert (out / "table4-seed-0.tar.gz").read_bytes() == before
