"""Shared test helpers: compose configs as the CLI does, and run the installed CLI."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from rcnnexp.cli import CONF_DIR
from rcnnexp.config import register_configs

REPO = Path(__file__).resolve().parent.parent
RCNNEXP = Path(sys.executable).parent / "rcnnexp"  # the installed console script

register_configs()


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/config.yaml`` composed with ``overrides``, exactly as ``rcnnexp info`` does."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of CLI subprocesses: one intra-op thread, because the tests' models
    are tiny and two spinning threads per process stall badly when processes share cores."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(extra or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``rcnnexp ARGS`` in a subprocess, capturing its output (never raises on failure)."""
    return subprocess.run([str(RCNNEXP), *args], cwd=cwd or REPO, env=cli_env(env), text=True,
                          capture_output=True, timeout=timeout, check=False)


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user error: non-zero exit, no traceback, and a message containing ``needles``."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle in out, f"{needle!r} not in:\n{out}"


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str,
                          code: int = 2) -> str:
    """The CLI's contract for bad input: exit ``code`` (2 unless a signal's), nothing but
    one ``error:`` line on stderr, containing ``needles``; returns that line."""
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in:\n{lines[0]}"
    return lines[0]


def train_run(run_dir: Path, *args: str) -> dict[str, Any]:
    """``rcnnexp train ARGS`` into ``run_dir``, which must succeed; its results.json."""
    proc = run_cli("train", *args, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((run_dir / "results.json").read_text())


def start_train(args: Sequence[str]) -> subprocess.Popen[str]:
    """A training run in the background. Its SIGINT is set back to the default first: a shell
    without job control starts background jobs (a CI runner's, say) with SIGINT ignored, and
    the child would inherit that and never see the test's Ctrl-C."""
    return subprocess.Popen([str(RCNNEXP), "train", *args], cwd=REPO, text=True,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until ``path`` exists, failing if the process ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for the event files in ``tb_dir``: tag -> (step, value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


TIME_COLUMNS = {"epoch_time_s", "images_per_s"}


def assert_same_run(a: Path, b: Path) -> None:
    """Two run directories hold the same training: metrics but timings, results, weights and
    the steps TensorBoard shows."""
    rows_a, rows_b = read_csv(a / "metrics.csv"), read_csv(b / "metrics.csv")
    strip = [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rows_a]
    assert strip == [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rows_b]
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    for key in ("test_top1", "test_top5", "best_val_top1", "best_epoch", "train_loss"):
        assert ra[key] == rb[key], key
    wa = torch.load(a / "checkpoints" / "last.pt", weights_only=True)["model"]
    wb = torch.load(b / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    steps = [[s for s, _ in scalars(d / "tb")["train/lr"]] for d in (a, b)]
    assert steps[0] == steps[1]


# quick settings for end-to-end runs on the digits: RCNN-8, one epoch of a few batches
QUICK = ("model.K=8", "model.T=1", "trainer.epochs=1", "trainer.batch_size=128",
         "trainer.progress=false")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """In-process tests use one torch thread: their ops are tiny, and on a shared CPU a
    second spinning thread only waits (the CLI subprocesses get the same through cli_env)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests skip themselves where CUDA is absent."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
