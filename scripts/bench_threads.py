"""Where a second CPU thread starts to pay: one training step of RCNN (forward, backward, an
SGD update) at several sizes, on one thread and on two, with the step's FLOPs.

    PYTHONPATH=$PWD python scripts/bench_threads.py [--steps 25]

It chose ``rcnnexp.engine.threads.SPLIT_MIN_FLOPS`` (docs/performance.md, "Threads"). Each
figure is the fastest of ``--steps`` steps (after three untimed ones), in two alternating
passes per thread count: the fastest step is the one no other process interrupted, so the
comparison holds on a machine that is not idle. One JSON line per size on stdout.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rcnnexp.cli import compose
from rcnnexp.config import register_configs
from rcnnexp.data.base import DataSpec
from rcnnexp.engine.build import build_model
from rcnnexp.engine.summary import count_flops
from rcnnexp.engine.threads import TRAIN_STEP_FACTOR

# (model.K, batch, image side): the digits default (8x8) at three batches, then Table 4's
# RCNN on 28x28 MNIST at a quarter of its width and at three batches
SIZES = ((32, 32, 8), (32, 64, 8), (32, 128, 8), (16, 32, 28), (32, 8, 28), (32, 16, 28),
         (32, 32, 28))
WARMUP = 3


def fastest_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    best = float("inf")
    for i in range(WARMUP + steps):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= WARMUP:
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25, help="timed steps per pass")
    args = parser.parse_args()
    register_configs()
    for k, batch, side in SIZES:
        overrides = [f"model.K={k}"] + (["experiment=rcnn/t4_rcnn32"] if side == 28 else [])
        spec = DataSpec(in_channels=1, num_classes=10, image_size=(side, side))
        torch.manual_seed(0)
        model = build_model(compose(overrides).model, spec)
        flops = TRAIN_STEP_FACTOR * count_flops(model, spec) * batch
        x, y = torch.rand(batch, 1, side, side), torch.randint(0, 10, (batch,))
        best: dict[int, float] = {}
        for threads in (1, 2, 1, 2):
            torch.set_num_threads(threads)
            best[threads] = min(best.get(threads, float("inf")),
                                fastest_step(model, x, y, args.steps))
        print(json.dumps({"K": k, "batch": batch, "image": side,
                          "step_gflop": round(flops / 1e9, 2),
                          "images_per_s_1": round(batch / best[1]),
                          "images_per_s_2": round(batch / best[2]),
                          "two_over_one": round(best[1] / best[2], 2)}), flush=True)


if __name__ == "__main__":
    main()
