"""The promise of `make train`: the default run, no overrides, on the embedded digits,
trains without falling back towards chance on the way, and averages 98 % test top-1 over ten
seeds (one seed: 96.9-99.4 %).

`make train` runs with the threads trainer.threads=null chooses (one, for this small step),
and CPU kernels sum in a thread-dependent order, so these runs choose as a user's shell would
(no OMP_NUM_THREADS) to check what a user gets.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import USERS_THREADS, run_cli

# points of validation top-1 below its best so far: more is a fall back towards chance (10 %).
# On one thread (what the default run chooses) the ten seeds of results/digits-default dipped
# for an epoch by up to 19.6 points (seed 5, epoch 3: 48 % to 28 %; seed 0, epoch 9: 96 % to
# 85 %) and recovered; a lower rate (0.005) or two warm-up epochs, ten seeds each on this
# project's CPU (2026-12-07), dipped by 8.9 and 10.6 at most but reached a lower mean
# validation top-1 (98.60 % and 98.88 % against 98.94 %), so the recipe keeps its rate
LARGEST_DROP = 25.0


def default_run(run: Path, *args: str) -> tuple[dict, list[float]]:
    """results.json and the validation top-1 per epoch of `rcnnexp train ARGS`."""
    proc = run_cli("train", "trainer.progress=false", *args, f"hydra.run.dir={run}",
                   timeout=600, env=USERS_THREADS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"tensorboard --logdir {run}" in proc.stdout  # tells the user where to look
    with open(run / "metrics.csv", newline="") as fh:
        val = [float(r["val_top1"]) for r in csv.DictReader(fh)]
    return json.loads((run / "results.json").read_text()), val


def largest_drop(curve: list[float]) -> float:
    return max(max(curve[:i]) - curve[i] for i in range(1, len(curve)))


# the default run on ten seeds (results/digits-default, one thread each as it now chooses,
# 2026-12-02): test top-1 96.94-99.44 %, mean 98.36 %; the test split is 359 images (one is
# 0.28 points), and the same seed on two threads lands elsewhere (seed 0: 99.16 % on one,
# 97.77 % on two)
ONE_RUN_AT_LEAST = 96.0
TEN_SEEDS_MEAN_AT_LEAST = 98.0


@pytest.mark.slow
def test_the_default_run_trains_without_a_collapse(tmp_path: Path) -> None:
    results, val = default_run(tmp_path / "run")
    assert (results["model"], results["dataset"], results["epochs"]) == ("rcnn", "digits", 30)
    assert results["threads"] == 1  # its step is too small to split
    assert results["test_top1"] >= ONE_RUN_AT_LEAST, results
    assert largest_drop(val) <= LARGEST_DROP, val


@pytest.mark.slow
def test_the_default_run_averages_98_percent_over_ten_seeds(tmp_path: Path) -> None:
    scores = []
    for seed in range(10):
        results, val = default_run(tmp_path / f"run{seed}", f"trainer.seed={seed}")
        assert largest_drop(val) <= LARGEST_DROP, (seed, val)
        scores.append(results["test_top1"])
    assert sum(scores) / len(scores) >= TEN_SEEDS_MEAN_AT_LEAST, scores
