"""First contact with a GPU (a lent one, or a new box): the stages that decide most first,
each capped by what is left of one time budget, everything written as it goes.

Run it through scripts/gpu_check.sh (which picks the interpreter: ``$PYTHON`` or python3,
never .venv's); this file needs nothing but the standard library, so that it runs before
the wheels it sets up are importable. ``--help`` lists the options and the stages.

Each stage runs as child processes (most stages one; ``table4`` one per seed, side by side),
each in its own process group, with stdout and stderr in ``OUT/<stage>.log`` (several
processes: each one's output in turn, once they end); after it, one line is appended to
``OUT/summary.txt``: the stage, passed / failed / timeout / stopped / skipped, its seconds,
and why (the exit code, the PASS/FAIL lines, pytest's counts, the images/s, how far each
run got). A stage is skipped when less is left of the budget than it needs to say anything
(its ``need``) after the seconds it is given to stop (its ``grace``); it runs at most its
``cap`` seconds, or what is left, and is then stopped: SIGTERM, and SIGKILL to whatever
still runs after its grace. ``timeout``: a stage cut short; ``stopped``: one that keeps what
it did (``table4``: every run saved, to be continued with ``--resume-from``), no failure.
The exit code is 1 when any stage failed or timed out, 2 for bad arguments (one line).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
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
class Ending:
    """How a stage's processes ended: each one's exit code by name (None: killed at the end of
    its grace), the cap that stopped them (None: they ended by themselves), the seconds."""

    codes: dict[str, int | None]
    stopped_at: float | None
    seconds: float


@dataclass
class Stage:
    """One stage: ``command(ctx)`` is the argv of each process it runs side by side, by name
    (None: skipped, ``ctx.why`` says why)."""

    name: str
    what: str
    cap: int  # seconds at most
    need: int  # seconds it needs to say anything: skipped when less is left
    command: Callable[[Context], dict[str, list[str]] | None]
    judge: Callable[[Context, int], tuple[str, str]] | None = None  # (status, note) from rc
    optional: bool = False  # runs only when named in --only
    grace: int = 5  # seconds from SIGTERM at its cap to SIGKILL, taken from the budget too
    # (status, note) from how its processes ended, whether by themselves or at the cap: for
    # a stage that keeps what a stopped run did (table4), in place of judge and "timeout"
    collect: Callable[[Context, Ending], tuple[str, str]] | None = None


@dataclass
class Context:
    python: str
    out: Path
    work: Path  # a temporary folder: wheels unpacked, MNIST unpacked, run dirs, junit files
    mnist: Path | None
    env: dict[str, str] = field(default_factory=dict)
    why: str = ""
    # table4: its seeds, the overrides added to its runs, the folder of an earlier call's
    # packed runs to continue, and each seed's epochs before this call
    seeds: tuple[int, ...] = (0, 1, 2)
    extra: tuple[str, ...] = ()
    resume_from: Path | None = None
    epochs_before: dict[int, int] = field(default_factory=dict)


# -- the stages -----------------------------------------------------------------------------
ONE = "stage"  # the name of a one-process stage's process


def one(command: Callable[[Context], list[str] | None]
        ) -> Callable[[Context], dict[str, list[str]] | None]:
    """A stage of one process, ``command``'s."""
    def commands(ctx: Context) -> dict[str, list[str]] | None:
        argv = command(ctx)
        return None if argv is None else {ONE: argv}
    return commands


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


def mnist_root(ctx: Context) -> Path | None:
    """The MNIST files unpacked into a root of their own (torchvision reads them uncompressed
    under <root>/MNIST/raw), once for every stage; None (``ctx.why`` says why) without them."""
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
    return root


def mnist_command(ctx: Context) -> list[str] | None:
    """RCNN Table 4's row, shortened to 2 epochs of stage 1."""
    root = mnist_root(ctx)
    if root is None:
        return None
    return [ctx.python, "-m", "rcnnexp", "train", "experiment=rcnn/t4_rcnn32",
            "trainer.retrain=false", "trainer.epochs=2", f"dataset.root={root}",
            "dataset.download=false", "trainer.device=cuda", "trainer.progress=false",
            f"hydra.run.dir={ctx.work / 'mnist-run'}"]


def grid_command(ctx: Context) -> list[str]:
    return ["bash", "scripts/bench_gpu.sh", str(ctx.out / "grid")]


# -- table4: RCNN Table 4's RCNN-32 row at the paper's whole protocol --------------------------
TABLE4_PRESET = "rcnn/t4_rcnn32"
# what every seed's run is told besides its seed, data and directory: the GPU, in the papers'
# arithmetic (fp32, no autocast, no TF32; CUDA's defaults, bf16 and TF32, would get the
# report's †, and this model's small steps are bound by kernel launches, not arithmetic),
# with plain log lines
TABLE4_SETTINGS = ("dataset.download=false", "trainer.device=cuda", "trainer.precision=fp32",
                   "trainer.tf32=false", "trainer.progress=false")
# the exit codes of a run stopped at the cap: its SIGTERM handled (128 + 15; it saved
# checkpoints/last.pt first), SIGTERM before training began, killed after the grace (None)
STOP_CODES = (128 + signal.SIGTERM, -signal.SIGTERM, None)


def packed_name(seed: int) -> str:
    """The one file a seed's run directory travels in (a lent GPU returns at most 8 files,
    no more than 2 folders down: a run directory's .hydra/ and tune/ would not come back)."""
    return f"table4-seed-{seed}.tar.gz"


def override_key(override: str) -> str:
    """The key an override sets, as :func:`rcnnexp.sweep.override_key` reads it: this script
    runs before hydra is importable (it unpacks the wheels for its stages), and importing
    rcnnexp.sweep imports hydra."""
    return override.split("=", 1)[0].lstrip("+~")


def with_extra(overrides: Sequence[str], extra: Sequence[str]) -> list[str]:
    """``overrides`` then ``extra``, less the overrides whose key an extra sets again."""
    named = {override_key(e) for e in extra}
    return [o for o in overrides if override_key(o) not in named] + list(extra)


def unpack(archive: Path, into: Path, seed: int) -> None:
    """A seed's packed run directory, unpacked as ``into/seed-S``; an archive holding anything
    else is refused (tarfile.TarError) before a file is written."""
    top = f"seed-{seed}"
    with tarfile.open(archive) as tar:
        stray = [n for n in tar.getnames() if n != top and not n.startswith(f"{top}/")]
        if stray:
            raise tarfile.TarError(f"it holds {stray[0]}, outside {top}/")
        tar.extractall(into, filter="data")


def pack(run_dir: Path, archive: Path) -> None:
    """``run_dir`` into ``archive`` (as ``seed-S/``), written whole or not at all: an archive
    it replaces (the one continued from) stays until the new one is complete."""
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(run_dir, arcname=run_dir.name)
    partial.replace(archive)


def table4_command(ctx: Context) -> dict[str, list[str]] | None:
    """One ``rcnnexp train`` per seed, side by side: RCNN Table 4's RCNN-32 row, both stages,
    nothing shortened, each in ``<work>/table4/seed-S``. A seed packed in ``--resume-from``
    is unpacked there and continued (``trainer.resume=auto``); one that finished there is
    carried over and not run again."""
    root = mnist_root(ctx)
    if root is None:
        return None
    runs = ctx.work / "table4"
    runs.mkdir(exist_ok=True)
    commands = {}
    for seed in ctx.seeds:
        run_dir = runs / f"seed-{seed}"
        archive = ctx.resume_from / packed_name(seed) if ctx.resume_from else None
        if archive is not None and archive.is_file():
            try:
                unpack(archive, runs, seed)
            except (OSError, tarfile.TarError) as err:
                ctx.why = f"{archive} cannot be unpacked ({err})"
                return None
        ctx.epochs_before[seed] = sum(progress_of(run_dir)[:2])
        if (run_dir / "results.json").is_file():
            continue
        overrides = [f"experiment={TABLE4_PRESET}", f"trainer.seed={seed}",
                     f"dataset.root={root}", *TABLE4_SETTINGS,
                     *(["trainer.resume=auto"] if run_dir.is_dir() else [])]
        commands[f"seed-{seed}"] = [ctx.python, "-m", "rcnnexp", "train",
                                    *with_extra(overrides, ctx.extra),
                                    f"hydra.run.dir={run_dir}"]
    return commands


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


def csv_rows(path: Path) -> list[dict[str, str]]:
    """A metrics.csv's rows (one per epoch); none where it is missing."""
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def progress_of(run_dir: Path) -> tuple[int, int, bool]:
    """A two-stage run's epochs in stage 1 and in stage 2 (rows of tune/metrics.csv and of
    metrics.csv) and whether it can be continued (a last.pt of either stage, or stage 1's
    results)."""
    resumable = any(p.is_file() for p in (run_dir / "tune" / "checkpoints" / "last.pt",
                                          run_dir / "checkpoints" / "last.pt",
                                          run_dir / "tune" / "results.json"))
    return (len(csv_rows(run_dir / "tune" / "metrics.csv")),
            len(csv_rows(run_dir / "metrics.csv")), resumable)


def describe_seed(ctx: Context, seed: int, code: int | str | None, ending: Ending
                  ) -> tuple[str, str]:
    """(done / stopped / failed, a few words) for one seed's run; ``code``: its exit code,
    or "not run" (finished in an earlier call)."""
    run_dir = ctx.work / "table4" / f"seed-{seed}"
    tune, retrain, resumable = progress_of(run_dir)
    results = run_dir / "results.json"
    if results.is_file():
        error = json.loads(results.read_text()).get("test_error")
        when = " (in an earlier call)" if code == "not run" else ""
        shown = f"{error:.2f}" if isinstance(error, int | float) else str(error)
        return "done", (f"seed {seed}: done{when}, test error {shown} % "
                        f"(stage 1: {tune} epochs, stage 2: {retrain})")
    if code not in STOP_CODES:
        log = process_log(ctx, "table4", f"seed-{seed}", len(ending.codes))
        lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
        return "failed", f"seed {seed}: failed, exit {code}: {lines[-1][:200] if lines else ''}"
    now = tune + retrain - ctx.epochs_before.get(seed, 0)
    pace = f", {ending.seconds / now:.1f} s each" if now > 0 else ""
    where = (f"in stage 2, {retrain} of {tune} epochs done" if retrain or
             (run_dir / "tune" / "results.json").is_file()
             else f"in stage 1, {tune} epochs done")
    killed = ", killed after its grace" if code is None else ""
    if not resumable:
        return "stopped", f"seed {seed}: stopped before its first checkpoint{killed} (starts " \
                          "afresh when continued)"
    return "stopped", f"seed {seed}: stopped {where} (+{now} this call{pace}){killed}, resumable"


def collect_table4(ctx: Context, ending: Ending) -> tuple[str, str]:
    """Each seed's run directory packed into OUT (one file a seed) and how far it got: passed
    when every seed is done, stopped when the cap stopped some (every one saved as far as
    it got), failed when a run failed."""
    said, states = [], []
    for seed in ctx.seeds:
        run_dir = ctx.work / "table4" / f"seed-{seed}"
        if run_dir.is_dir():
            pack(run_dir, ctx.out / packed_name(seed))
        state, words = describe_seed(ctx, seed, ending.codes.get(f"seed-{seed}", "not run"),
                                     ending)
        states.append(state)
        said.append(words)
    status = ("failed" if "failed" in states else "stopped" if "stopped" in states
              else "passed")
    head = f"stopped at its cap of {ending.stopped_at:.0f} s; " if ending.stopped_at else ""
    tail = ("; continue with --only table4 --resume-from a copy of this folder"
            if status == "stopped" else "")
    return status, head + "; ".join(said) + tail


STAGES = (
    Stage("env", "versions, the device, hydra importable", 60, 10, one(env_command),
          lambda c, rc: judge_checks(c, "env", rc)),
    Stage("smoke", "each CUDA path alone: fused SGD's device rate against a float one, fp16 "
          "with the scaler, no host sync in a step, CUDA graphs against eager",
          150, 45, one(smoke_command), lambda c, rc: judge_checks(c, "smoke", rc)),
    Stage("paths", "the tests of one CUDA path each, by id: nvJPEG against PIL, fp16 through "
          "the CLI, no sync over an epoch, a reduce_overhead run", 180, 60, one(paths_command),
          lambda c, rc: judge_pytest(c, "paths", rc)),
    Stage("gpu_tests", "the other gpu-marked tests (pytest -m gpu)", 150, 60,
          one(gpu_tests_command), lambda c, rc: judge_pytest(c, "gpu_tests", rc)),
    Stage("bench_eager", "images/s, eager bf16: " + ", ".join(BENCH_FAMILIES), 90, 30,
          one(bench_command("off")), lambda c, rc: judge_bench(c, "bench_eager", rc)),
    Stage("bench_graphs", "images/s, CUDA graphs (reduce-overhead) bf16: "
          + ", ".join(BENCH_FAMILIES), 180, 60, one(bench_command("reduce-overhead")),
          lambda c, rc: judge_bench(c, "bench_graphs", rc)),
    Stage("mnist", "RCNN Table 4 on real MNIST, 2 epochs of stage 1", 150, 60,
          one(mnist_command), lambda c, rc: judge_mnist(c, "mnist", rc)),
    Stage("grid", "the whole benchmark grid, scripts/bench_gpu.sh (15-25 min: not in the "
          "default run, name it in --only with a budget to match)", 3600, 600,
          one(grid_command), optional=True),
    Stage("table4", "RCNN Table 4's RCNN-32 row at the paper's whole protocol (both stages, "
          "nothing shortened, fp32 without TF32), one run per --seeds side by side, packed "
          "into OUT/table4-seed-S.tar.gz; stopped at the cap with every run saved, continued "
          "by --resume-from (not in the default run: name it in --only)", 14400, 20,
          table4_command, collect=collect_table4, optional=True, grace=10),
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


def process_log(ctx: Context, stage: str, name: str, processes: int) -> Path:
    """Where a process's stdout and stderr go: a stage's one process straight to
    OUT/<stage>.log; of several, each to a file of its own, appended there once all end."""
    if processes == 1:
        return ctx.out / f"{stage}.log"
    return ctx.work / "logs" / f"{stage}-{name}.log"


def stop(procs: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM to each process's group, then SIGKILL to those still running after ``grace``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
        end = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, end - time.monotonic()))
        if sig == signal.SIGKILL or all(p.poll() is not None for p in procs):
            return


def run_stage(stage: Stage, ctx: Context, cap: float) -> tuple[str, dict[str, int | None]]:
    """Run ``stage``'s processes side by side for at most ``cap`` seconds: ("ran", exit
    codes by name), ("stopped", exit codes; None: killed) or ("skipped", {}) when it has
    nothing to run here."""
    ctx.why = ""
    commands = stage.command(ctx)
    if commands is None:
        return "skipped", {}
    logs = {name: process_log(ctx, stage.name, name, len(commands)) for name in commands}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    deadline = time.monotonic() + cap
    with contextlib.ExitStack() as files:
        for name, argv in commands.items():
            logs[name].parent.mkdir(parents=True, exist_ok=True)
            log = files.enter_context(open(logs[name], "w"))
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            procs[name] = subprocess.Popen(argv, cwd=REPO, env=ctx.env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        how = "ran"
        try:
            for proc in procs.values():
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            how = "stopped"
            stop(list(procs.values()), stage.grace)
    if len(commands) > 1:
        with open(ctx.out / f"{stage.name}.log", "w") as whole:
            for path in logs.values():
                whole.write(path.read_text(errors="replace") + "\n")
    return how, {name: (None if p.returncode == -signal.SIGKILL and how == "stopped"
                        else p.returncode) for name, p in procs.items()}


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
        left = budget - (time.monotonic() - start) - stage.grace
        if left < stage.need:
            note(f"{stage.name}\tskipped\t0s\t{left:.0f} s of the budget left (less its "
                 f"{stage.grace} s to stop), it needs {stage.need} s")
            continue
        cap = min(stage.cap, left)
        began = time.monotonic()
        how, codes = run_stage(stage, ctx, cap)
        took = time.monotonic() - began
        rc = next(iter(codes.values()), None)
        if how == "skipped":
            status, why = "skipped", ctx.why
        elif stage.collect is not None:
            status, why = stage.collect(ctx, Ending(codes, cap if how == "stopped" else None,
                                                    took))
        elif how == "stopped":
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


TABLE4_HOWTO = """\
table4 on a lent GPU (one command of at most 600 s; docs/performance.md, "On a GPU"):
  once, in the repository root: the wheels in gpu-wheels/, the four MNIST files gzipped in
    gpu-mnist/, both ignored through .git/info/exclude (with gpu-table4/, below)
  first call, carry [gpu-wheels, gpu-mnist], timeout_s 600:
    bash scripts/gpu_check.sh --only table4 --budget 540
  copy the folder of files it returns to gpu-table4/; each next call, carry [gpu-wheels,
  gpu-mnist, gpu-table4], timeout_s 600, until the summary says every seed is done:
    bash scripts/gpu_check.sh --only table4 --budget 540 --resume-from gpu-table4
  then: bash scripts/results.sh table4   (unpacks them into results/, writes the report)"""


def parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds 0,1,2``: distinct non-negative integers."""
    try:
        seeds = tuple(int(t) for t in text.split(","))
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        refuse(f"--seeds {text!r}: a comma-separated list of distinct non-negative integers, "
               "such as 0,1,2")
    return seeds


def check_table4_options(args: argparse.Namespace, out: Path) -> None:
    """--extra and --resume-from as the table4 stage needs them; an --out holding runs that
    this call would overwrite is refused."""
    for item in args.extra:
        if "=" not in item:
            refuse(f"--extra {item!r}: an override of rcnnexp train, KEY=VALUE")
        if override_key(item) in ("trainer.seed", "hydra.run.dir"):
            refuse(f"--extra {item!r}: the table4 stage sets {override_key(item)} itself "
                   "(--seeds; a folder per seed)")
    if args.resume_from is not None and not any(
            (args.resume_from / packed_name(seed)).is_file() for seed in args.seeds):
        refuse(f"--resume-from {args.resume_from}: holds no table4-seed-N.tar.gz for seeds "
               f"{','.join(map(str, args.seeds))} (expected the folder an earlier table4 call "
               "returned)")
    held = [packed_name(seed) for seed in args.seeds if (out / packed_name(seed)).is_file()]
    same = args.resume_from is not None and args.resume_from.resolve() == out.resolve()
    if held and not same:
        refuse(f"--out {out} already holds table4 runs ({held[0]}): continue them with "
               f"--resume-from {out}, or choose another --out")


def main(argv: Sequence[str] | None = None) -> int:
    stage_list = "\n".join(f"  {s.name:<13}{s.what} (at most {s.cap} s, needs {s.need} s)"
                           for s in STAGES)
    parser = OneLineParser(
        prog="scripts/gpu_check.sh", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="First contact with a GPU: the stages below in this order, each capped "
                    "by what is left of --budget, each one's log and a summary line written "
                    "as it goes.",
        epilog=f"stages:\n{stage_list}\n\n{TABLE4_HOWTO}")
    parser.add_argument("--out", type=Path, default=None,
                        help="the output folder (default: $OUT, else "
                             "outputs/gpu-check/UTC-DATE-TIME); made if missing")
    parser.add_argument("--budget", type=float, default=480,
                        help="seconds for every stage together (default 480: 8 minutes)")
    parser.add_argument("--only", default=None,
                        help="a comma-separated list of stages to run (default: all but grid "
                             "and table4)")
    parser.add_argument("--wheels", type=Path, default=REPO / "gpu-wheels",
                        help="wheels to unpack onto PYTHONPATH when hydra is not importable "
                             "(default: gpu-wheels/ here)")
    parser.add_argument("--mnist", type=Path, default=None,
                        help="the four MNIST files, raw or .gz (default: $MNIST, else "
                             "gpu-mnist/ here where it exists; none: the mnist and table4 "
                             "stages skip)")
    parser.add_argument("--seeds", default=None,
                        help="table4: the seeds, one run each side by side (default 0,1,2)")
    parser.add_argument("--extra", nargs="+", default=[], metavar="KEY=VALUE",
                        help="table4: overrides added to every seed's rcnnexp train, replacing "
                             "the stage's own for the same key (trainer.compile="
                             "reduce_overhead, say); give the same ones when continuing")
    parser.add_argument("--resume-from", type=Path, default=None, metavar="DIR",
                        help="table4: continue the runs packed in DIR (the folder an earlier "
                             "call returned: table4-seed-N.tar.gz) where they stopped; a seed "
                             "without one there starts afresh, a finished one is kept")
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
    given = [o for o, v in (("--seeds", args.seeds), ("--extra", args.extra),
                            ("--resume-from", args.resume_from)) if v]
    if given and "table4" not in [s.name for s in stages]:
        refuse(f"{given[0]} is for the table4 stage, which is not among the stages run "
               "(--only table4)")
    args.seeds = parse_seeds(args.seeds) if args.seeds is not None else Context.seeds
    if "table4" in [s.name for s in stages]:
        check_table4_options(args, out)
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
                      mnist=mnist and mnist.resolve(), seeds=args.seeds,
                      extra=tuple(args.extra),
                      resume_from=args.resume_from and args.resume_from.resolve())
        return run(ctx, stages, args.budget, args.wheels)


if __name__ == "__main__":
    sys.exit(main())
