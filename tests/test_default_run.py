"""The promise of `make train`: the default run, no overrides, on the embedded digits."""

from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import run_cli


def test_default_run_reaches_95_percent_in_under_3_minutes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    start = time.perf_counter()
    proc = run_cli("train", "trainer.progress=false", f"hydra.run.dir={run}", timeout=600)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"tensorboard --logdir {run}" in proc.stdout  # tells the user where to look
    results = json.loads((run / "results.json").read_text())
    assert (results["model"], results["dataset"], results["epochs"]) == ("rcnn", "digits", 30)
    assert results["test_top1"] >= 95.0, results
    assert wall < 180, f"the default run took {wall:.0f} s"
