"""Training-step throughput of the model families, as the trainer runs them, without datasets.

    python scripts/bench_train.py [--family F ...] [--compile off|default|reduce-overhead ...]
                                  [--precision auto|fp32|bf16|fp16 ...] [--channels-last off|on ...]
                                  [--grid] [--device auto|cpu|cuda] [--batch N] [--steps 10]
                                  [--rounds 3] [--warmup 3] [--threads N] [--lock FILE]
                                  [--markdown] [OVERRIDE ...]
    python scripts/bench_train.py --table FILE.jsonl ...     # the Markdown table of saved lines

A family is an experiment preset (FAMILIES): RCNN-96 at 32x32 and at 24x24 (CIFAR-10, Table 2
without and with augmentation), RecNet-60-1280 (CIFAR-100, Table 3) and C-RNN at 227x227
(ILSVRC-2012, Table 1). Each variant (a family x compile mode x precision x channels_last)
is the preset with ``trainer.compile``, ``trainer.precision`` and ``trainer.channels_last``
set, built and switched on by the trainer's own code (``engine.acceleration``:
``configure_backends`` and ``accelerate``) and trained with the preset's optimizer, schedule
and batch size on one random batch already on the device: the trainer's step (schedule,
autocast forward, cross-entropy, backward, update, the on-device metric sums) with no data
loading. ``--grid`` runs every combination of the dimensions not given (on CPU without
reduce-overhead, which is CUDA graphs) in this one process; OVERRIDES are `rcnnexp train`'s
(``model.K=8``) and apply to every variant.

One JSON line per variant on stdout (``--markdown``: then a Markdown table), with

- ``images_per_s``: the median of ``--rounds`` timed blocks of ``--steps`` steps, after
  ``--warmup`` untimed steps (which include compiling: ``warmup_s``);
- ``launches_per_step``, counted by torch.profiler over ``--profile-steps`` steps after the
  timing (``launch_unit`` says what): on CUDA the host's launch calls (cudaLaunchKernel,
  cudaGraphLaunch, memcpy/memset: a replayed CUDA graph is one), with
  ``device_kernels_per_step`` the kernels (and copies) the device ran; on CPU the top-level
  aten ops (views too) plus Inductor's fused C++ kernels (which record themselves to the
  profiler for that: ``torch._inductor.config.cpp.enable_kernel_profile``, on CPU only);
- ``train_flops_per_s``: ``engine.summary.count_flops`` (forward FLOPs of one image) x 3 for
  forward and backward x images/s, and on a GPU in PEAK_TFLOPS its ``peak_fraction`` of the
  dense peak for the precision (bf16/fp16; fp32 with ``trainer.tf32``: TF32; else fp32);
- ``row_wall_s``: the preset's paper-length row at that speed: ``trainer.epochs`` x the
  training images of its dataset (TRAIN_IMAGES) x 2 with ``trainer.retrain`` (tune, then
  retrain on all; both counted at the full training set), over images/s. An upper bound
  where a plateau schedule ends a run early (RCNN's 400 epochs are a cap).

``--lock FILE`` holds an exclusive lock on FILE while timing and profiling, so that several
of these processes can compile at once on one GPU machine and still time one at a time
(scripts/bench_gpu.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import gc
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch._inductor.config
import torch.nn.functional as F
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from rcnnexp.cli import compose
from rcnnexp.config import register_configs, validate
from rcnnexp.engine.acceleration import accelerate, configure_backends
from rcnnexp.engine.build import (
    build_data,
    build_model,
    build_optimizer,
    build_schedule,
    count_params,
)
from rcnnexp.engine.evaluate import topk_correct
from rcnnexp.engine.runtime import make_runtime, seed_everything
from rcnnexp.engine.summary import count_flops
from rcnnexp.errors import UserError

FAMILIES = {  # the issue's model families, each an experiment preset (a paper's table row)
    "rcnn96-32": "rcnn/t2_rcnn96",
    "rcnn96-24": "rcnn/t2_aug_rcnn96",
    "recnet60-1280": "recnet/t3_60_1280",
    "crnn227": "crnn/t1_crnn_1view",
    "rcnn32-28": "rcnn/t4_rcnn32",  # MNIST, the CPU path of RCNN Table 4
}
COMPILE_MODES = ("off", "default", "reduce-overhead")  # eager, Inductor, and CUDA graphs
PRECISIONS = ("fp32", "bf16")  # the grid's; fp16 and auto on request
CHANNELS_LAST = ("off", "on")
# images in each dataset's training split (the official splits); SVHN's 531,131 "extra"
# images are added when dataset.extra is on
TRAIN_IMAGES = {"CIFAR10": 50_000, "CIFAR100": 50_000, "ImageNet": 1_281_167,
                "MNIST": 60_000, "SVHN": 73_257, "MITIndoor": 5_360, "SUN397": 19_850,
                "Digits": 1_797}
SVHN_EXTRA = 531_131
# dense peak TFLOP/s (no sparsity), NVIDIA's data sheets: bf16 (= fp16), TF32, fp32; the first
# key found in torch.cuda.get_device_name() applies (H100 alone: SXM, "H100 80GB HBM3")
PEAK_TFLOPS = {
    "H200 NVL": (835.0, 417.5, 60.0),
    "H200": (989.4, 494.7, 66.9),
    "H100 NVL": (835.0, 417.5, 60.0),
    "H100 PCIe": (756.0, 378.0, 51.2),
    "H100": (989.4, 494.7, 66.9),
    "A100": (312.0, 156.0, 19.5),
}
# host calls that put work on a CUDA stream (the profiler's names for them)
LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx",
                "cudaGraphLaunch", "cudaMemcpyAsync", "cudaMemsetAsync")


@dataclasses.dataclass(frozen=True)
class Variant:
    family: str
    compile: str  # a COMPILE_MODES entry
    precision: str
    channels_last: bool

    def overrides(self) -> list[str]:
        """The trainer keys that make this variant (Hydra takes the enums' member names)."""
        return [f"experiment={FAMILIES[self.family]}",
                f"trainer.compile={self.compile.replace('-', '_')}",
                f"trainer.precision={self.precision}",
                f"trainer.channels_last={str(self.channels_last).lower()}"]


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one ``error:`` line on stderr and exit 2, as the CLI's (argparse would
    print its usage too)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (scripts/bench_train.py --help)", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", nargs="+", choices=sorted(FAMILIES), default=None,
                        help="default: all")
    parser.add_argument("--compile", nargs="+", choices=COMPILE_MODES, default=None,
                        help="default: off (--grid: all)")
    parser.add_argument("--precision", nargs="+", choices=("auto", "fp32", "bf16", "fp16"),
                        default=None, help="default: auto (--grid: fp32 and bf16)")
    parser.add_argument("--channels-last", nargs="+", choices=CHANNELS_LAST, default=None,
                        help="default: off (--grid: both)")
    parser.add_argument("--grid", action="store_true",
                        help="every combination of the dimensions not given")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch", type=int, default=None, help="default: the preset's")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--profile-steps", type=int, default=2,
                        help="steps profiled to count launches")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--lock", type=Path, default=None,
                        help="hold this file's lock while timing (several processes, one GPU)")
    parser.add_argument("--markdown", action="store_true", help="also a Markdown table")
    parser.add_argument("--table", nargs="+", type=Path, default=None,
                        help="only print the Markdown table of these JSON-lines files")
    parser.add_argument("overrides", nargs="*", help="rcnnexp train overrides")
    args = parser.parse_args(argv)
    for name in ("batch", "steps", "rounds", "warmup", "profile_steps", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args


def variants(args: argparse.Namespace, device_type: str) -> list[Variant]:
    """The variants asked for, in a stable order (family-major)."""
    compile_modes = args.compile or (COMPILE_MODES if args.grid else ("off",))
    if args.grid and args.compile is None and device_type != "cuda":
        compile_modes = tuple(m for m in compile_modes if m != "reduce-overhead")
        print("note: no CUDA graphs off CUDA: the grid leaves out reduce-overhead",
              file=sys.stderr)
    precisions = args.precision or (PRECISIONS if args.grid else ("auto",))
    layouts = args.channels_last or (CHANNELS_LAST if args.grid else ("off",))
    return [Variant(family, mode, precision, layout == "on")
            for family, mode, precision, layout in itertools.product(
                args.family or list(FAMILIES), compile_modes, precisions, layouts)]


@contextlib.contextmanager
def exclusive(lock: Path | None) -> Iterator[None]:
    """Hold ``lock`` (flock, released when the process ends too); nothing without one."""
    if lock is None:
        yield
        return
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_launches(step: Callable[[], None], device: torch.device,
                   steps: int) -> tuple[float, float | None, str]:
    """(launches per step, device kernels per step or None, what a launch is) of ``step``."""
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    sync(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    events = prof.events()
    if device.type == "cuda":
        launches = sum(1 for e in events if e.name.startswith(LAUNCH_CALLS))
        kernels = sum(1 for e in events if e.device_type == DeviceType.CUDA)
        return launches / steps, kernels / steps, "cuda_launch_calls"

    def top_level_op(event: Any) -> bool:
        if "cpp_fused" in event.name:  # an Inductor kernel (cpp.enable_kernel_profile)
            return True
        if not event.name.startswith("aten::"):
            return False
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith("aten::"):
                return False
            parent = parent.cpu_parent
        return True

    return sum(1 for e in events if top_level_op(e)) / steps, None, "cpu_ops"


def peak_flops(device: torch.device, precision: str, tf32: bool) -> float | None:
    """The device's dense peak FLOP/s for ``precision``, or None (CPU, an unknown GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    peaks = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    if peaks is None:
        return None
    bf16, tf32_peak, fp32 = peaks
    tflops = bf16 if precision in ("bf16", "fp16") else tf32_peak if tf32 else fp32
    return tflops * 1e12


def train_images(dataset_cfg: Any) -> int:
    """Images in one epoch of the dataset's training split (TRAIN_IMAGES)."""
    name = str(dataset_cfg._target_).rsplit(".", 1)[-1]
    images = TRAIN_IMAGES[name]
    if name == "SVHN" and dataset_cfg.get("extra"):
        images += SVHN_EXTRA
    return images


def measure(variant: Variant, args: argparse.Namespace) -> dict[str, Any]:
    """Build ``variant`` as the trainer does, time its training step; one result row."""
    overrides = [*variant.overrides(), f"trainer.device={args.device}", *args.overrides]
    if args.batch is not None:
        overrides.append(f"trainer.batch_size={args.batch}")
    cfg = compose(overrides)
    tc = validate(cfg).trainer
    runtime = make_runtime(tc.device.value, tc.precision.value)
    device = runtime.device
    seed_everything(tc.seed)
    configure_backends(tc, device)
    spec = build_data(cfg.dataset).spec
    model = build_model(cfg.model, spec).to(device)
    flops_per_image = count_flops(model, spec)
    train_model = accelerate(model, tc, device)  # what the trainer's step calls
    optimizer = build_optimizer(cfg.optim, model)
    images_per_epoch = train_images(cfg.dataset)
    batch = tc.batch_size
    schedule = build_schedule(cfg.schedule, optimizer, max(1, images_per_epoch // batch),
                              tc.epochs)
    scaler = runtime.grad_scaler()
    x = torch.randn(batch, spec.in_channels, *spec.image_size, device=device)
    y = torch.randint(spec.num_classes, (batch,), device=device)
    window = torch.zeros(3, dtype=torch.float64, device=device)
    train_model.train()

    def step() -> None:  # trainer.Trainer.train_epoch's step
        schedule.step()
        with runtime.autocast():
            logits = train_model(x)
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        with torch.no_grad():
            window[0] += loss.detach() * len(y)
            window[1] += topk_correct(logits.detach(), y, 1)
            window[2] += len(y)

    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warmup_s = time.perf_counter() - start
    rates = []
    with exclusive(args.lock):
        for _ in range(args.rounds):
            sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync(device)
            rates.append(batch * args.steps / (time.perf_counter() - start))
        launches, kernels, unit = count_launches(step, device, args.profile_steps)
    window.tolist()  # (the sums are read as the trainer reads them, once in a while)
    images_per_s = statistics.median(rates)
    train_flops = 3 * flops_per_image * images_per_s
    peak = peak_flops(device, runtime.precision, tc.tf32)
    stages = 2 if tc.retrain else 1
    return {
        "family": variant.family, "preset": FAMILIES[variant.family],
        "model": getattr(model, "arch", type(model).__name__), "params": count_params(model),
        "input": [spec.in_channels, *spec.image_size], "classes": spec.num_classes,
        "batch": batch, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "compile": variant.compile, "precision": runtime.precision,
        "channels_last": variant.channels_last, "tf32": bool(tc.tf32 and device.type == "cuda"),
        "threads": torch.get_num_threads(), "warmup_s": round(warmup_s, 2),
        "images_per_s": round(images_per_s, 1), "rounds_images_per_s": [round(r, 1) for r in rates],
        "step_ms": round(1000 * batch / images_per_s, 3),
        "launches_per_step": round(launches, 1), "launch_unit": unit,
        "device_kernels_per_step": None if kernels is None else round(kernels, 1),
        "forward_flops_per_image": flops_per_image, "train_flops_per_s": round(train_flops),
        "peak_flops_per_s": peak,
        "peak_fraction": None if peak is None else round(train_flops / peak, 4),
        "row_epochs": tc.epochs, "row_stages": stages, "row_images_per_epoch": images_per_epoch,
        "row_wall_s": round(stages * tc.epochs * images_per_epoch / images_per_s, 1),
    }


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table (the device named above it), the compile modes of a
    (family, precision, layout) side by side."""
    rows = sorted(rows, key=lambda r: (
        list(FAMILIES).index(r["family"]) if r["family"] in FAMILIES else len(FAMILIES),
        r["family"], r["precision"], r["channels_last"],
        COMPILE_MODES.index(r["compile"]) if r["compile"] in COMPILE_MODES else 0))
    devices = sorted({f"{r['device_name']} ({r['device']})" for r in rows})
    lines = [f"Device: {', '.join(devices)}", "",
             "| family | compile | precision | channels_last | batch | img/s | launches/step "
             "| TFLOP/s | of peak | paper row |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        unit = "" if r["launch_unit"] == "cuda_launch_calls" else " ops"
        peak = "-" if r["peak_fraction"] is None else f"{100 * r['peak_fraction']:.1f} %"
        lines.append(
            f"| {r['family']} | {r['compile']} | {r['precision']} | "
            f"{'on' if r['channels_last'] else 'off'} | {r['batch']} | {r['images_per_s']:,.0f} "
            f"| {r['launches_per_step']:.0f}{unit} | {r['train_flops_per_s'] / 1e12:.3g} | {peak} "
            f"| {duration(r['row_wall_s'])} |")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """``42 s``, ``12.5 min``, ``3.2 h``, ``4.1 d``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def read_rows(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The JSON lines of ``paths`` (``-``: stdin), skipping blank lines."""
    rows = []
    for path in paths:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        rows += [json.loads(line) for line in text.splitlines() if line.strip()]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table is not None:
        try:
            print(markdown(read_rows(args.table)))
        except (OSError, ValueError, KeyError) as err:
            print(f"error: --table needs the JSON lines this script prints: {err}",
                  file=sys.stderr)
            return 2
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    register_configs()
    rows = []
    try:
        device_type = make_runtime(args.device, "fp32").device.type
        if device_type == "cpu":  # Inductor's C++ kernels then show in the profile
            torch._inductor.config.cpp.enable_kernel_profile = True
        for variant in variants(args, device_type):
            row = measure(variant, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
            torch._dynamo.reset()  # the next variant compiles afresh, memory freed
            gc.collect()
            if device_type == "cuda":
                torch.cuda.empty_cache()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    if args.markdown:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
