"""Training-step throughput of RecNet's fast CRC against a plain per-segment loop.

    PYTHONPATH=$PWD python scripts/bench_crc.py [--arch 60_1280] [--batch 64] [--rounds 3]

Builds ``model=recnet_<arch>`` (default RecNet-60-1280) for CIFAR-100's shape (3x32x32, 100
classes) three times with the same weights: ``plain`` (every CRC runs the loop of Eq. 3
segment by segment, as one would write it from the paper: slice x_i, convolve with W_x, add
h_{i-1} * W_h, BN_i + ReLU (the CRC's own per-step non-linearity), concatenate, then the
TB), ``fast`` (the project's CRC: the d input-side convolutions are one convolution over the
segments folded into the batch) and ``fast+merged`` (Eq. 7 as well).
It times SGD training steps (forward, backward, update) on random batches, the variants
interleaved round by round in one process so that machine load hits them alike, and prints
images/s per variant (median over rounds) and the ratios to ``plain``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import types
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rcnnexp.cli import CONF_DIR, compose
from rcnnexp.config import register_configs
from rcnnexp.data.base import DataSpec
from rcnnexp.engine.build import build_model
from rcnnexp.models.layers.crc import CRC
from rcnnexp.models.recnet import RecNet

ARCHS = sorted(p.stem.removeprefix("recnet_") for p in (CONF_DIR / "model").glob("recnet_*.yaml"))


def plain_crc_forward(self: CRC, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3 written directly: one segment at a time, both convolutions per step."""
    px, ph = self.weight_x.shape[-1] // 2, self.weight_h.shape[-1] // 2
    outs, h = [], None
    for i in range(self.d):
        x_i = x[:, i * self.s_in:(i + 1) * self.s_in]
        z = F.conv2d(x_i, self.weight_x, self.bias, padding=px)
        if h is not None:
            z = z + F.conv2d(h, self.weight_h, padding=ph)
        out, h = self._sigma(z, i)
        outs.append(out)
    return torch.cat(outs, dim=1)


def make_plain(model: RecNet) -> RecNet:
    for module in model.modules():
        if isinstance(module, CRC):
            module.forward = types.MethodType(plain_crc_forward, module)  # type: ignore[method-assign]
    return model


def build(arch: str, size: int, merge_transition: bool) -> RecNet:
    """``model=recnet_<arch>`` as ``rcnnexp train`` builds it for 100 classes of size x size."""
    cfg = compose([f"model=recnet_{arch}", f"model.merge_transition={merge_transition}"])
    model = build_model(cfg.model, DataSpec(3, 100, (size, size)))
    assert isinstance(model, RecNet)
    return model


def train_step(model: RecNet, opt: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="60_1280", choices=ARCHS)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant and round")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    register_configs()
    torch.manual_seed(0)
    base = build(args.arch, args.size, merge_transition=False)
    merged = build(args.arch, args.size, merge_transition=True)
    merged.load_state_dict(base.state_dict())
    variants: dict[str, RecNet] = {"plain": make_plain(copy.deepcopy(base)), "fast": base,
                                   "fast+merged": merged}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True)
            for k, m in variants.items()}
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 100, (args.batch,))
    step: dict[str, Callable[[], None]] = {
        k: (lambda k=k: train_step(variants[k], opts[k], x, y)) for k in variants}
    for k in variants:  # warm-up: allocator, oneDNN primitives
        step[k]()
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for k in order:
            start = time.perf_counter()
            for _ in range(args.steps):
                step[k]()
            rates[k].append(args.batch * args.steps / (time.perf_counter() - start))
        print(f"round {r + 1}: " + ", ".join(f"{k} {rates[k][-1]:.1f} img/s" for k in variants),
              flush=True)
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f"RecNet-{args.arch.replace('_', '-')}, batch {args.batch}, {args.size}x{args.size}, "
          f"training steps, {torch.get_num_threads()} threads, median of {args.rounds} rounds:")
    for k, v in median.items():
        print(f"  {k:<12} {v:8.1f} images/s   x{v / median['plain']:.2f} vs plain")


if __name__ == "__main__":
    main()
