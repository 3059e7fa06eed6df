"""How many CPU threads a run's kernels use (``trainer.threads``), chosen so that a run on a
shared machine slows down in proportion to the load instead of collapsing.

torch's default is one thread per core, and each parallel kernel ends with its threads
waiting on each other. When another CPU-bound process holds one of the cores, every kernel
waits for the thread that is not running: on this project's 2-core machine the default
digits run took 164 s on two threads next to two busy processes, 50 s on one, and 32-38 s
either way on an idle machine (docs/performance.md, "Threads"). Splitting a step only pays
where the step is big enough. So ``trainer.threads=null`` picks

- ``OMP_NUM_THREADS`` where it is set (the user's, or torchrun's for several processes),
- one thread where a step is under :data:`SPLIT_MIN_FLOPS` on the CPU,
- otherwise the cores this process may use (its CPU affinity, capped by a cgroup's CPU
  quota, as in a container or a SLURM job), shared among the processes torchrun started on
  this machine.

The count is chosen once, at the start: a different count changes the order of the sums in
a kernel and so the trained weights, bit for bit, and results.json records it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

# the FLOPs of one process's step (a training step: forward and backward, 3x the forward)
# below which a CPU run keeps one thread. On this project's idle 2-core Xeon
# (docs/performance.md, "Threads"; scripts/bench_threads.py) a second thread made steps of
# 0.32 and 0.65 GFLOP 1.06x and 1.09x faster, steps from 1.3 GFLOP up 1.37-1.59x; next to two
# busy processes the default run (0.32 GFLOP) took 3.3x as long on two threads as on one
SPLIT_MIN_FLOPS = 1.0e9
# a training step's FLOPs over its forward pass's: the backward pass costs about twice it
TRAIN_STEP_FACTOR = 3
CGROUP_V2_QUOTA = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" or "max <period>"


@dataclass(frozen=True)
class Threads:
    """The chosen count, and why (the run's banner says both)."""

    count: int
    reason: str

    def describe(self) -> str:
        return f"{self.count} thread{'s' if self.count != 1 else ''} ({self.reason})"


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask, capped by a cgroup (v2) CPU
    quota where one is set (``docker --cpus=2`` leaves the mask at every core of the host)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    try:
        quota, period = CGROUP_V2_QUOTA.read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def choose_threads(configured: int | None, step_flops: float, device_type: str) -> Threads:
    """``trainer.threads`` resolved for a run whose step costs ``step_flops`` on one process
    (a training step: :data:`TRAIN_STEP_FACTOR` x the forward's; see the module's docstring
    for the rule)."""
    if configured is not None:
        return Threads(configured, "trainer.threads")
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return Threads(int(env), "OMP_NUM_THREADS")
    if device_type == "cpu" and step_flops < SPLIT_MIN_FLOPS:
        return Threads(1, f"a step of {step_flops / 1e9:.2g} GFLOP is too small to split")
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    cores = max(1, usable_cores() // processes)
    share = " each of the processes here" if processes > 1 else " this process"
    return Threads(cores, f"the cores{share} may use")


def apply_threads(threads: Threads) -> None:
    """Set the count for this process's intra-op kernels (OpenMP, MKL, oneDNN)."""
    if torch.get_num_threads() != threads.count:
        torch.set_num_threads(threads.count)


__all__ = ["SPLIT_MIN_FLOPS", "TRAIN_STEP_FACTOR", "Threads", "apply_threads", "choose_threads",
           "usable_cores"]
