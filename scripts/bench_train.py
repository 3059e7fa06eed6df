"""Training-step throughput of any configured model, without loading its dataset.

    python scripts/bench_train.py [--batch 64] [--steps 10] [--warmup 3] [--threads N]
                                  [--channels-last] [OVERRIDE ...]

OVERRIDES are the ones `rcnnexp train` takes (``model=rcnn model.K=96 dataset=cifar10
trainer.device=cuda trainer.precision=bf16``). The model is built for the dataset's input
shape and classes, which the dataset's config knows without its files, and trained with
the configured optimizer on random batches already on the device: the step the trainer
runs (autocast forward, cross-entropy, scaled backward, update), with no data loading.
Prints one JSON object: the images/s (median of ``--rounds`` timed blocks) and the setup.

The README's RCNN-96 number:

    python scripts/bench_train.py model=rcnn model.K=96 dataset=cifar10 trainer.device=cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from rcnnexp.cli import compose
from rcnnexp.config import register_configs
from rcnnexp.engine.build import build_data, build_model, build_optimizer, count_params
from rcnnexp.engine.runtime import make_runtime


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    register_configs()
    cfg = compose(args.overrides)
    runtime = make_runtime(cfg.trainer.device, cfg.trainer.precision)
    torch.manual_seed(cfg.trainer.seed)
    spec = build_data(cfg.dataset).spec
    model = build_model(cfg.model, spec).to(runtime.device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    scaler = runtime.grad_scaler()
    x = torch.randn(args.batch, spec.in_channels, *spec.image_size, device=runtime.device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.randint(spec.num_classes, (args.batch,), device=runtime.device)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with runtime.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.rounds):
        _sync(runtime.device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        _sync(runtime.device)
        rates.append(args.batch * args.steps / (time.perf_counter() - start))
    print(json.dumps({
        "model": getattr(model, "arch", type(model).__name__), "params": count_params(model),
        "input": [spec.in_channels, *spec.image_size], "classes": spec.num_classes,
        "batch": args.batch, "device": str(runtime.device),
        "device_name": (torch.cuda.get_device_name(runtime.device)
                        if runtime.device.type == "cuda" else "cpu"),
        "precision": cfg.trainer.precision, "channels_last": args.channels_last,
        "threads": torch.get_num_threads(), "images_per_s": round(statistics.median(rates), 1),
        "rounds_images_per_s": [round(r, 1) for r in rates],
    }))


if __name__ == "__main__":
    main()
