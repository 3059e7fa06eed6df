"""First contact with a GPU (a lent one, or a new box): the stages that decide most first,
each capped by what is left of one time budget, everything written as it goes.

Run it through scripts/gpu_check.sh (which picks the interpreter: ``$PYTHON`` or python3,
never .venv's); this file needs nothing but the standard library, so that it runs before
the wheels it sets up are importable. ``--help`` lists the options and the stages.

Each stage runs as a child process (its own process group, killed whole at its cap) with
stdout and stderr in ``OUT/<stage>.log``; after it, one line is appended to
``OUT/summary.txt``: the stage, passed / failed / timeout / skipped, its seconds, and why
(the exit code, the PASS/FAIL lines, pytest's counts, the images/s). A stage is skipped
when less is left of the budget than it needs to say anything (its ``need``); it runs at
most its ``cap`` seconds, or what is left. The exit code is 1 when any stage failed or
timed out, 2 for bad arguments (one line).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parent.parent
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
# the CUDA paths that tests already check alone, run by id in the `paths` stage (and left out
# of the `gpu_tests` stage after it)
PATH_TESTS = (
    "tests/test_data_decode.py::test_nvjpeg_decodes_as_the_cpu_decoder_does",
    "tests/test_gpu.py::test_mixed_precision_run_through_the_cli[fp16]",
    "tests/test_acceleration.py::test_a_cuda_step_never_waits_for_the_device",
    "tests/test_acceleration.py::test_a_compiled_bf16_channels_last_run_on_cuda[reduce_overhead]",
)
# the images/s stages: per family, eager and with CUDA graphs, bf16; few steps
BENCH = ("--device", "cuda", "--precision", "bf16", "--steps", "20", "--rounds", "3",
         "--warmup", "3")
BENCH_FAMILIES = ("rcnn96-24", "recnet60-1280", "rcnn32-28")


@dataclass
class Stage:
    """One stage: ``command(ctx)`` is its argv (None: skipped, ``ctx.why`` says why)."""

    name: str
    what: str
    cap: int  # seconds at most
    need: int  # seconds it needs to say anything: skipped when less is left
    command: Callable[[Context], list[str] | None]
    judge: Callable[[Context, int], tuple[str, str]] | None = None  # (status, note) from rc
    optional: bool = False  # runs only when named in --only


@dataclass
class Context:
    python: str
    out: Path
    work: Path  # a temporary folder: wheels unpacked, MNIST unpacked, run dirs, junit files
    mnist: Path | None
    env: dict[str, str] = field(default_factory=dict)
    why: str = ""


# -- the stages -----------------------------------------------------------------------------
def env_command(ctx: Context) -> list[str]:
    return [ctx.python, "scripts/gpu_smoke.py", "env"]


def smoke_command(ctx: Context) -> list[str]:
    return [ctx.python, "scripts/gpu_smoke.py"]


def pytest_command(ctx: Context, name: str, *selection: str) -> list[str]:
    return [ctx.python, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
            f"--junitxml={ctx.work / f'{name}.xml'}", *selection]


def paths_command(ctx: Context) -> list[str]:
    return pytest_command(ctx, "paths", *PATH_TESTS)


def gpu_tests_command(ctx: Context) -> list[str]:
    deselect = [arg for test in PATH_TESTS for arg in ("--deselect", test)]
    return pytest_command(ctx, "gpu_tests", "-m", "gpu", *deselect, "tests")


def bench_command(compile_mode: str) -> Callable[[Context], list[str]]:
    def command(ctx: Context) -> list[str]:
        return [ctx.python, "scripts/bench_train.py", *BENCH, "--compile", compile_mode,
                "--family", *BENCH_FAMILIES]
    return command


def mnist_command(ctx: Context) -> list[str] | None:
    """RCNN Table 4's row, shortened to 2 epochs of stage 1, on the MNIST files unpacked into
    a root of their own (torchvision reads them uncompressed under <root>/MNIST/raw)."""
    if ctx.mnist is None:
        ctx.why = "no MNIST folder (--mnist DIR, or gpu-mnist/ under the repository)"
        return None
    root = ctx.work / "mnist-root"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        target = raw / name
        if target.exists():
            continue
        found = [p for base in (ctx.mnist, ctx.mnist / "MNIST" / "raw")
                 for p in (base / name, base / f"{name}.gz") if p.is_file()]
        if not found:
            ctx.why = f"{ctx.mnist} holds no {name}[.gz]"
            return None
        opener: Callable[..., Any] = gzip.open if found[0].suffix == ".gz" else open
        with opener(found[0], "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return [ctx.python, "-m", "rcnnexp", "train", "experiment=rcnn/t4_rcnn32",
            "trainer.retrain=false", "trainer.epochs=2", f"dataset.root={root}",
            "dataset.download=false", "trainer.device=cuda", "trainer.progress=false",
            f"hydra.run.dir={ctx.work / 'mnist-run'}"]


def grid_command(ctx: Context) -> list[str]:
    return ["bash", "scripts/bench_gpu.sh", str(ctx.out / "grid")]


def last_line(ctx: Context, name: str) -> str:
    """The last line a stage printed: a refusal's one line, an exception's last."""
    lines = (ctx.out / f"{name}.log").read_text(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else ""


def judge_checks(ctx: Context, name: str, rc: int) -> tuple[str, str]:
    """A stage that prints PASS/FAIL/SKIP lines: those lines, in short."""
    text = (ctx.out / f"{name}.log").read_text(errors="replace")
    lines = [line[:200] for line in text.splitlines() if re.match(r"(PASS|FAIL|SKIP) ", line)]
    status = "passed" if rc == 0 else "failed"
    return status, "; ".join(lines) or f"exit {rc}: {last_line(ctx, name)}"


def judge_pytest(ctx: Context, name: str, rc: int) -> tuple[str, str]:
    """pytest's counts from its JUnit file: every test skipped (no CUDA here) is `skipped`."""
    try:
        suite = ET.parse(ctx.work / f"{name}.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    except (OSError, ET.ParseError, IndexError):
        return "failed", f"exit {rc}, no test report"
    ran = counts["tests"] - counts["skipped"]
    note = (f"{ran - counts['failures'] - counts['errors']} passed, {counts['failures']} "
            f"failed, {counts['errors']} errors, {counts['skipped']} skipped")
    if rc == 0 and ran == 0:
        return "skipped", f"{note} (every test skipped itself)"
    return ("passed" if rc == 0 else "failed"), note


def judge_bench(ctx: Context, name: str, rc: int) -> tuple[str, str]:
    rows = []
    for line in (ctx.out / f"{name}.log").read_text(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            row = json.loads(line)
            if isinstance(row, dict) and "images_per_s" in row:
                rows.append(f"{row.get('family')} {row['images_per_s']:.0f} img/s")
    if rc != 0:
        return "failed", "; ".join([*rows, f"exit {rc}: {last_line(ctx, name)}"])
    return "passed", "; ".join(rows) or "no images/s printed"


def judge_mnist(ctx: Context, name: str, rc: int) -> tuple[str, str]:
    results = ctx.work / "mnist-run" / "results.json"
    if rc != 0 or not results.exists():
        return "failed", f"exit {rc}: {last_line(ctx, name)}"
    summary = json.loads(results.read_text())
    with open(ctx.out / f"{name}.log", "a") as log:
        log.write("\nresults.json: " + json.dumps(summary) + "\n")
    return "passed", (f"test top-1 {summary.get('test_top1')} % after {summary.get('epochs')} "
                      f"epochs, {summary.get('images_per_s')} img/s, {summary.get('wall_s')} s")


STAGES = (
    Stage("env", "versions, the device, hydra importable", 60, 10, env_command,
          lambda c, rc: judge_checks(c, "env", rc)),
    Stage("smoke", "each CUDA path alone: fused SGD's device rate against a float one, fp16 "
          "with the scaler, no host sync in a step, CUDA graphs against eager",
          150, 45, smoke_command, lambda c, rc: judge_checks(c, "smoke", rc)),
    Stage("paths", "the tests of one CUDA path each, by id: nvJPEG against PIL, fp16 through "
          "the CLI, no sync over an epoch, a reduce_overhead run", 180, 60, paths_command,
          lambda c, rc: judge_pytest(c, "paths", rc)),
    Stage("gpu_tests", "the other gpu-marked tests (pytest -m gpu)", 150, 60,
          gpu_tests_command, lambda c, rc: judge_pytest(c, "gpu_tests", rc)),
    Stage("bench_eager", "images/s, eager bf16: " + ", ".join(BENCH_FAMILIES), 90, 30,
          bench_command("off"), lambda c, rc: judge_bench(c, "bench_eager", rc)),
    Stage("bench_graphs", "images/s, CUDA graphs (reduce-overhead) bf16: "
          + ", ".join(BENCH_FAMILIES), 180, 60, bench_command("reduce-overhead"),
          lambda c, rc: judge_bench(c, "bench_graphs", rc)),
    Stage("mnist", "RCNN Table 4 on real MNIST, 2 epochs of stage 1", 150, 60, mnist_command,
          lambda c, rc: judge_mnist(c, "mnist", rc)),
    Stage("grid", "the whole benchmark grid, scripts/bench_gpu.sh (15-25 min: not in the "
          "default run, name it in --only with a budget to match)", 3600, 600, grid_command,
          optional=True),
)
NAMES = [s.name for s in STAGES]


# -- set-up and the runner ------------------------------------------------------------------
def importable(python: str, module: str, env: dict[str, str]) -> bool:
    return subprocess.run([python, "-c", f"import {module}"], env=env, cwd=REPO,
                          capture_output=True, check=False).returncode == 0


def setup(ctx: Context, wheels: Path) -> str:
    """rcnnexp from this checkout on PYTHONPATH and, where hydra is not importable, the
    wheels in ``wheels`` unpacked beside it (a wheel is a zip: no pip, no registry); where
    the interpreter lacks Python.h (Triton builds its CUDA launcher with it), CPython's
    headers from a ``pyinclude*.tgz`` in the same folder. Returns what it did, in words."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    ctx.env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    said = []
    if importable(ctx.python, "hydra", ctx.env):
        said.append("hydra importable")
    else:
        found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
        if not found:
            return f"hydra is not importable and {wheels} holds no wheels"
        site = ctx.work / "site"
        for wheel in found:
            zipfile.ZipFile(wheel).extractall(site)
        ctx.env["PYTHONPATH"] = os.pathsep.join((str(site), path))
        said.append(f"{len(found)} wheels of {wheels} unpacked onto PYTHONPATH")
    has_header = subprocess.run(
        [ctx.python, "-c", "import os,sys,sysconfig; sys.exit(not os.path.exists("
         "sysconfig.get_paths()['include'] + '/Python.h'))"], check=False).returncode == 0
    headers = sorted(wheels.glob("pyinclude*.tgz")) if wheels.is_dir() else []
    if not has_header and headers:
        include = ctx.work / "include"
        include.mkdir()
        subprocess.run(["tar", "xzf", str(headers[0]), "-C", str(include)], check=True)
        dirs = [str(p) for p in include.glob("*") if p.is_dir()] or [str(include)]
        ctx.env["CPATH"] = os.pathsep.join([*dirs, *filter(None, [os.environ.get("CPATH")])])
        said.append(f"Python.h from {headers[0].name}")
    elif not has_header:
        said.append("no Python.h (torch.compile on CUDA may fail to build Triton's launcher)")
    return "; ".join(said)


def run_stage(stage: Stage, ctx: Context, cap: float) -> tuple[str, int | None]:
    """Run ``stage`` for at most ``cap`` seconds: ("ran", rc), ("timeout", None) or
    ("skipped", None) when it has nothing to run here."""
    ctx.why = ""
    command = stage.command(ctx)
    if command is None:
        return "skipped", None
    with open(ctx.out / f"{stage.name}.log", "w") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(command, cwd=REPO, env=ctx.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return "ran", proc.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, None)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=grace)
                    break
            return "timeout", None


def run(ctx: Context, stages: Sequence[Stage], budget: float, wheels: Path) -> int:
    start = time.monotonic()
    summary = ctx.out / "summary.txt"

    def note(line: str) -> None:
        with open(summary, "a") as fh:
            fh.write(line + "\n")
        print(line, flush=True)

    note(f"# gpu_check {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: budget "
         f"{budget:.0f} s, stages {','.join(s.name for s in stages)}; python {ctx.python}")
    note(f"setup\tdone\t{time.monotonic() - start:.0f}s\t{setup(ctx, wheels)}")
    bad = 0
    for stage in stages:
        left = budget - (time.monotonic() - start)
        if left < stage.need:
            note(f"{stage.name}\tskipped\t0s\t{left:.0f} s of the budget left, it needs "
                 f"{stage.need} s")
            continue
        cap = min(stage.cap, left)
        began = time.monotonic()
        how, rc = run_stage(stage, ctx, cap)
        took = time.monotonic() - began
        if how == "skipped":
            status, why = "skipped", ctx.why
        elif how == "timeout":
            status, why = "timeout", f"stopped at its cap of {cap:.0f} s"
        elif stage.judge is not None:
            assert rc is not None
            status, why = stage.judge(ctx, rc)
        else:
            status, why = ("passed" if rc == 0 else "failed"), f"exit {rc}"
        bad += status in ("failed", "timeout")
        note(f"{stage.name}\t{status}\t{took:.0f}s\t{why}")
    note(f"# done in {time.monotonic() - start:.0f} s: {bad} stage(s) failed or timed out; "
         f"logs in {ctx.out}")
    return 1 if bad else 0


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"gpu_check.sh: {message}", file=sys.stderr)
        sys.exit(2)


def refuse(message: str) -> NoReturn:
    print(f"gpu_check.sh: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: Sequence[str] | None = None) -> int:
    stage_list = "\n".join(f"  {s.name:<13}{s.what} (at most {s.cap} s, needs {s.need} s)"
                           for s in STAGES)
    parser = OneLineParser(
        prog="scripts/gpu_check.sh", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="First contact with a GPU: the stages below in this order, each capped "
                    "by what is left of --budget, each one's log and a summary line written "
                    "as it goes.",
        epilog=f"stages:\n{stage_list}")
    parser.add_argument("--out", type=Path, default=None,
                        help="the output folder (default: $OUT, else "
                             "outputs/gpu-check/UTC-DATE-TIME); made if missing")
    parser.add_argument("--budget", type=float, default=480,
                        help="seconds for every stage together (default 480: 8 minutes)")
    parser.add_argument("--only", default=None,
                        help="a comma-separated list of stages to run (default: all but grid)")
    parser.add_argument("--wheels", type=Path, default=REPO / "gpu-wheels",
                        help="wheels to unpack onto PYTHONPATH when hydra is not importable "
                             "(default: gpu-wheels/ here)")
    parser.add_argument("--mnist", type=Path, default=None,
                        help="the four MNIST files, raw or .gz (default: $MNIST, else "
                             "gpu-mnist/ here where it exists; none: the mnist stage skips)")
    args = parser.parse_args(argv)
    if not args.budget > 0:
        refuse(f"--budget must be a positive number of seconds; got {args.budget:g}")
    stages = [s for s in STAGES if not s.optional]
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in NAMES]
        if unknown or not names:
            refuse(f"--only {args.only!r}: no stage {unknown[0] if unknown else 'named'}; "
                   f"the stages: {', '.join(NAMES)}")
        stages = [s for s in STAGES if s.name in names]
    out = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else
                       REPO / "outputs" / "gpu-check" / time.strftime("%Y%m%d-%H%M%S",
                                                                     time.gmtime()))
    mnist = args.mnist or (Path(os.environ["MNIST"]) if os.environ.get("MNIST") else None)
    if mnist is None and (REPO / "gpu-mnist").is_dir():
        mnist = REPO / "gpu-mnist"
    if mnist is not None and not mnist.is_dir():
        refuse(f"--mnist {mnist}: no such folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        refuse(f"--out {out}: cannot make it ({err.strerror})")
    with tempfile.TemporaryDirectory(prefix="rcnnexp-gpu-check-") as work:
        ctx = Context(python=sys.executable, out=out.resolve(), work=Path(work),
                      mnist=mnist and mnist.resolve())
        return run(ctx, stages, args.budget, args.wheels)


if __name__ == "__main__":
    sys.exit(main())
