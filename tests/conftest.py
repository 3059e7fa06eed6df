"""Shared test helpers: compose configs as the CLI does, and run the installed CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

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
