"""First contact with a GPU, one path at a time: what this machine is, and each CUDA path of a
training step alone, with the numbers the test suite only bounds.

    python scripts/gpu_smoke.py env                 # versions, device, hydra; exit 1 without CUDA
    python scripts/gpu_smoke.py [CHECK ...]         # the CUDA checks (default: all, in order)
    python scripts/gpu_smoke.py --device cpu [CHECK ...]   # this script's own code on a CPU

Each check prints one ``PASS name: ...`` or ``FAIL name: ...`` line (and a FAIL's short
traceback) and the next one runs; the exit code is 1 when any failed. The checks, in the
order scripts/gpu_check.sh runs them:

- ``fused_sgd``: the fused SGD step, whose learning rate the schedule writes into a device
  tensor, trains what the plain loop with a float rate trains (fp32, no TF32);
- ``fp16_scaler``: fp16 autocast with the run's own GradScaler and the fused step stays
  finite and lowers the loss;
- ``no_host_sync``: a bf16 step (schedule, forward, backward, fused update) under
  ``torch.cuda.set_sync_debug_mode("error")``: any host synchronisation raises;
- ``cuda_graphs``: ``trainer.compile=reduce_overhead`` through the trainer's own
  ``accelerate`` (a step is one CUDA-graph replay) gives eager's losses, with an eager
  evaluation in between as the trainer does.

nvJPEG against PIL is tests/test_data_decode.py's nvJPEG test, which gpu_check.sh runs by id.
The models are small (RCNN-16, T=2, on the digits' 8x8 shape): the checks are about the
paths, not the speed, and run in seconds once CUDA is up. ``--device cpu`` runs what has a
CPU meaning (the CUDA-only checks say they were skipped) so that a change to this script is
tried before it spends a GPU's time; it measures nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F


class SkipCheck(Exception):
    """A check with no meaning on this device."""


def env() -> int:
    """Print what the stages after this one depend on; 1 when CUDA or Hydra is missing."""
    import torchvision

    print("python", platform.python_version(), sys.executable)
    print("torch", torch.__version__, "cuda", torch.version.cuda,
          "cudnn", torch.backends.cudnn.version(), "torchvision", torchvision.__version__)
    try:
        import triton

        print("triton", triton.__version__)
    except ImportError:
        print("triton missing (torch.compile on CUDA needs it)")
    include = sysconfig.get_paths()["include"]
    print("Python.h", "found" if os.path.exists(f"{include}/Python.h") else "MISSING",
          f"in {include}", "(CPATH=" + os.environ.get("CPATH", "") + ")")
    print("C compiler", shutil.which("cc") or shutil.which("gcc") or "MISSING")
    print("CPU cores", os.cpu_count())
    problems = []
    try:
        import hydra

        print("hydra", hydra.__version__, os.path.dirname(hydra.__file__))
    except ImportError:
        problems.append("hydra is not importable (put the wheels' folder on PYTHONPATH)")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            print(f"cuda:{i}", props.name, "capability", f"{props.major}.{props.minor}",
                  f"{props.total_memory / 2**30:.0f} GiB", f"{props.multi_processor_count} SMs")
        print("bf16 supported", torch.cuda.is_bf16_supported())
    else:
        problems.append("no CUDA device is visible to torch")
    if shutil.which("nvidia-smi"):
        sys.stdout.flush()
        subprocess.run(["nvidia-smi"], check=False)
    for problem in problems:
        print("FAIL env:", problem)
    if not problems:
        print("PASS env")
    return 1 if problems else 0


# -- the CUDA paths ---------------------------------------------------------------------------
def tiny(device: torch.device, *overrides: str) -> tuple[Any, Any, torch.nn.Module]:
    """A composed config, the digits' data spec and RCNN-16 (T=2, no dropout) on ``device``,
    seeded alike for every call."""
    from rcnnexp.cli import compose
    from rcnnexp.config import register_configs
    from rcnnexp.engine.build import build_data, build_model

    register_configs()
    cfg = compose(["model.K=16", "model.T=2", "model.dropout=0.0", "schedule=cosine",
                   *overrides])
    spec = build_data(cfg.dataset).spec
    torch.manual_seed(0)
    return cfg, spec, build_model(cfg.model, spec).to(device)


def batch(spec: Any, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, spec.in_channels, *spec.image_size, generator=g)
    y = torch.randint(0, spec.num_classes, (32,), generator=g)
    return x.to(device), y.to(device)


def steps(model: torch.nn.Module, cfg: Any, x: torch.Tensor, y: torch.Tensor, n: int,
          precision: str = "fp32", step_model: torch.nn.Module | None = None,
          optimizer: Any = None, schedule: Any = None) -> tuple[list[torch.Tensor], Any, Any]:
    """``n`` training steps as the trainer takes them (schedule, autocast forward, loss,
    scaled backward, update) with the run's own optimizer, schedule and loss scaler; the
    losses stay on the device (a CUDA-graph output is overwritten by the next replay:
    cloned)."""
    from rcnnexp.engine.build import build_optimizer, build_schedule
    from rcnnexp.engine.runtime import Runtime

    runtime = Runtime(device=x.device, precision=precision)
    optimizer = optimizer or build_optimizer(cfg.optim, model)
    schedule = schedule or build_schedule(cfg.schedule, optimizer, 10, 2)
    scaler = runtime.grad_scaler()
    losses = []
    for _ in range(n):
        schedule.step()
        with runtime.autocast():
            loss = F.cross_entropy((step_model or model)(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.detach().clone())
    return losses, optimizer, schedule


def exact_fp32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def fused_sgd(device: torch.device) -> str:
    exact_fp32()
    trained = {}
    for fused in ("true", "false"):
        cfg, spec, model = tiny(device, f"optim.fused={fused}")
        x, y = batch(spec, device, 1)
        _, optimizer, _ = steps(model, cfg, x, y, 8)
        trained[fused] = (optimizer.param_groups[0]["lr"], list(model.parameters()))
    (lr, fused_params), (float_lr, loop_params) = trained["true"], trained["false"]
    assert isinstance(lr, torch.Tensor) and lr.device.type == device.type, type(lr)
    assert isinstance(float_lr, float), type(float_lr)
    diff = max((a - b).abs().max().item() for a, b in zip(fused_params, loop_params, strict=True))
    assert diff < 1e-4, f"max |dW| {diff:.2e}"
    return f"rate {lr.item():.6g} on {lr.device}; after 8 steps max |dW| {diff:.1e} (< 1e-4)"


def fp16_scaler(device: torch.device) -> str:
    cfg, spec, model = tiny(device)
    x, y = batch(spec, device, 2)
    losses, optimizer, _ = steps(model, cfg, x, y, 12, precision="fp16")
    values = torch.stack(losses).tolist()
    assert all(v == v and abs(v) != float("inf") for v in values), values
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert values[-1] < values[0], values
    return (f"losses {values[0]:.3f} -> {values[-1]:.3f}; fused step "
            f"{optimizer.param_groups[0].get('fused')}")


def no_host_sync(device: torch.device) -> str:
    if device.type != "cuda":
        raise SkipCheck("set_sync_debug_mode watches CUDA only")
    cfg, spec, model = tiny(device)
    x, y = batch(spec, device, 3)
    _, optimizer, schedule = steps(model, cfg, x, y, 2, precision="bf16")  # warm: allocations
    torch.cuda.set_sync_debug_mode("error")
    try:
        steps(model, cfg, x, y, 3, precision="bf16", optimizer=optimizer, schedule=schedule)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return "3 bf16 steps with the fused update: no host synchronisation"


def cuda_graphs(device: torch.device) -> str:
    if device.type != "cuda":
        raise SkipCheck("CUDA graphs are CUDA's")
    from rcnnexp.config import validate
    from rcnnexp.engine.acceleration import accelerate

    exact_fp32()
    runs = {}
    for mode in ("off", "reduce_overhead"):
        torch._dynamo.reset()
        cfg, spec, model = tiny(device, f"trainer.compile={mode}", "trainer.device=cuda")
        step_model = accelerate(model, validate(cfg).trainer, device)
        x, y = batch(spec, device, 4)
        start = time.perf_counter()
        first, optimizer, schedule = steps(model, cfg, x, y, 4, step_model=step_model)
        seconds = time.perf_counter() - start
        with torch.inference_mode():  # the trainer evaluates the plain model between steps
            model.eval()
            model(x[:7])
            model.train()
        then, _, _ = steps(model, cfg, x, y, 3, step_model=step_model, optimizer=optimizer,
                           schedule=schedule)
        runs[mode] = (torch.stack(first + then).tolist(), seconds)
    (eager, _), (graphs, compile_s) = runs["off"], runs["reduce_overhead"]
    diff = max(abs(a - b) for a, b in zip(eager, graphs, strict=True))
    assert diff < 1e-3, (eager, graphs)
    return (f"7 steps, an evaluation between, as eager's: max |dloss| {diff:.1e}; the first "
            f"4 steps with the compile {compile_s:.0f} s")


CHECKS: dict[str, Callable[[torch.device], str]] = {
    "fused_sgd": fused_sgd, "fp16_scaler": fp16_scaler, "no_host_sync": no_host_sync,
    "cuda_graphs": cuda_graphs}


def run_checks(names: Sequence[str], device: torch.device) -> int:
    failed = 0
    for name in names:
        start = time.perf_counter()
        try:
            said = CHECKS[name](device)
        except SkipCheck as why:
            print(f"SKIP {name}: {why}", flush=True)
            continue
        except Exception as err:  # one path's failure must not hide the next one's result
            failed += 1
            print(f"FAIL {name}: {type(err).__name__}: {str(err)[:500]} "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
            traceback.print_exc(limit=8)
            continue
        print(f"PASS {name}: {said} ({time.perf_counter() - start:.1f} s)", flush=True)
    return 1 if failed else 0


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        print(f"gpu_smoke.py: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checks", nargs="*", metavar="CHECK",
                        help=f"env, or any of {', '.join(CHECKS)} (default: all of these)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = parser.parse_args(argv)
    unknown = [c for c in args.checks if c not in ("env", *CHECKS)]
    if unknown:  # (argparse's choices refuse an empty nargs="*" on Python 3.11)
        parser.error(f"no check {unknown[0]!r}; the checks: env, {', '.join(CHECKS)}")
    if args.checks == ["env"]:
        return env()
    if "env" in args.checks:
        parser.error("env runs alone")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("FAIL all: no CUDA device is visible to torch", flush=True)
        return 1
    return run_checks(args.checks or list(CHECKS), torch.device(args.device))


if __name__ == "__main__":
    sys.exit(main())
