"""Slow checks (`make test-slow`): RCNN-32 on the real MNIST files, and the data-path
benchmark."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli

SHARED_DATA = REPO.parent / "shared" / "data"  # ../shared/data beside the checkout


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(),
                    reason="the real MNIST files are not in ../shared/data/MNIST/raw")
def test_rcnn32_reaches_98_percent_on_real_mnist_in_one_epoch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    start = time.perf_counter()
    proc = run_cli("train", "dataset=mnist", "dataset.root=../shared/data",
                   "dataset.download=false", "model.K=32", "trainer.epochs=1",
                   "trainer.progress=false", f"hydra.run.dir={run}", timeout=3 * 3600)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    print(f"real MNIST, RCNN-32, 1 epoch: test top-1 {results['test_top1']:.2f} %, "
          f"{wall:.0f} s wall")
    assert results["arch"].startswith("RCNN-32")
    assert results["test_top1"] >= 98.0


@pytest.mark.slow
def test_fast_path_outruns_a_torchvision_dataloader() -> None:
    """scripts/bench_data.py, briefly: the GPU-resident path beats PIL + DataLoader by far."""
    proc = _run_script("bench_data.py", "--device", "cpu", "--rounds", "2", "--images", "4000",
                       "--loader-images", "1000", "--workers", "0")
    ratio = float(proc.split("median ratio ")[1].split("x")[0])
    assert ratio > 3, proc


def _run_script(name: str, *args: str) -> str:
    import subprocess

    out = subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], cwd=REPO,
                         capture_output=True, text=True, timeout=1800, check=True)
    return out.stdout
