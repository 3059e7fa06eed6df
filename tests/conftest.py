"""Shared test helpers: compose configs as the CLI does, and run the CLI as a user does."""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib.util
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from rcnnexp.cli import CONF_DIR
from rcnnexp.config import register_configs
from rcnnexp.data.base import DataSpec
from rcnnexp.engine.build import build_model
from rcnnexp.engine.run import RunContext, train
from rcnnexp.models.base import ImageClassifier
from rcnnexp.sweep import job_number

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# the CLI, as `python -m rcnnexp` under this interpreter: the same entry point as the console
# script, also where torch came with the machine and rcnnexp is on PYTHONPATH, not installed
RCNNEXP = (sys.executable, "-m", "rcnnexp")
# a run the tests mean for the CPU (bit-exact resume, gloo, device names) says so: on a GPU
# machine trainer.device=auto would pick CUDA
CPU = "trainer.device=cpu"
# a search (conf/search) runs on a plugin package, Hydra's Optuna sweeper: on a Python that
# brings its own torch and not every dependency (a GPU image), the tests that run a search skip,
# and rcnnexp itself names the package to install (tests/test_refusals.py)
NEEDS_OPTUNA = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
    reason="Hydra's Optuna sweeper is not installed (pip install hydra-optuna-sweeper)")

register_configs()


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/config.yaml`` composed with ``overrides``, exactly as ``rcnnexp info`` does."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="config", overrides=list(overrides))


@functools.cache
def model_config(option: str) -> DictConfig:
    """``conf/model/OPTION.yaml`` as the CLI composes it; composed once per test session
    (callers copy it, never change it)."""
    return compose_config([f"model={option}"]).model


def make_model(option: str, in_channels: int, num_classes: int, image_size: Sequence[int],
               **changes: Any) -> ImageClassifier:
    """The ``model=OPTION`` model for inputs of this shape, with ``changes`` to its
    hyper-parameters. The changes reach the constructor as they are, unchecked by the
    schema, so that a test can see what the model itself refuses."""
    kwargs = OmegaConf.to_container(model_config(option))
    assert isinstance(kwargs, dict)
    cls = get_class(kwargs.pop("_target_"))
    return cls(in_channels=in_channels, num_classes=num_classes, image_size=image_size,
               **{**kwargs, **changes})


def build_for(cfg: DictConfig, in_channels: int, num_classes: int,
              image_size: Sequence[int]) -> ImageClassifier:
    """The model a composed config builds for a dataset of this shape, as the engine does
    (on the device in effect: ``with torch.device("meta")`` to count parameters only)."""
    return build_model(cfg.model, DataSpec(in_channels, num_classes, tuple(image_size)))


def cli_env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """The environment of CLI subprocesses: one intra-op thread, because the tests' models
    are tiny and two spinning threads per process stall badly when processes share cores;
    and this folder importable, for the ``_target_``s that tests define (:mod:`tiny_checksums`,
    :mod:`crashing_model`). ``extra`` adds variables, and takes out those it maps to None."""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    env: dict[str, str | None] = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
                                  "PYTHONPATH": path, **(extra or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return {k: v for k, v in env.items() if v is not None}


# a CLI subprocess's environment as a user's shell has it: no OMP_NUM_THREADS, so that
# trainer.threads=null chooses (rcnnexp/engine/threads.py)
USERS_THREADS: dict[str, str | None] = {"OMP_NUM_THREADS": None}


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300,
            env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``rcnnexp ARGS`` in a subprocess, capturing its output (never raises on failure)."""
    return subprocess.run([*RCNNEXP, *args], cwd=cwd or REPO, env=cli_env(env), text=True,
                          capture_output=True, timeout=timeout, check=False)


def in_process(capsys: pytest.CaptureFixture[str], *args: str
               ) -> subprocess.CompletedProcess[str]:
    """``rcnnexp ARGS`` through :func:`rcnnexp.cli.main` in this process, with the exit code
    the command would end with (a refusal exits before any training, so a subprocess's
    start-up is not worth its seconds)."""
    from rcnnexp.cli import main

    code: int | str | None = 0
    try:
        main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user error: non-zero exit, no traceback, and a message containing ``needles``."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle in out, f"{needle!r} not in:\n{out}"


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str,
                          code: int = 2) -> str:
    """The CLI's contract for bad input: exit ``code`` (2 unless a signal's), nothing but
    one ``error:`` line on stderr, containing ``needles``; returns that line."""
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in:\n{lines[0]}"
    return lines[0]


def train_run(run_dir: Path, *args: str) -> dict[str, Any]:
    """``rcnnexp train ARGS`` into ``run_dir``, which must succeed; its results.json."""
    proc = run_cli("train", *args, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((run_dir / "results.json").read_text())


def start_train(args: Sequence[str], group: bool = False) -> subprocess.Popen[str]:
    """A training run in the background. Its SIGINT is set back to the default first: a shell
    without job control starts background jobs (a CI runner's, say) with SIGINT ignored, and
    the child would inherit that and never see the test's Ctrl-C. ``group``: in a process
    group of its own, which ``os.killpg`` signals whole, as a terminal's Ctrl-C does."""
    return subprocess.Popen([*RCNNEXP, "train", *args], cwd=REPO, text=True,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=_default_sigint, start_new_session=group)


def torchrun_command(nproc: int, *args: str) -> list[str]:
    """``rcnnexp ARGS`` under torchrun with ``nproc`` processes on this machine
    (``python -m torch.distributed.run`` is torchrun; ``--standalone`` finds a free port, so
    tests running at once do not meet). Each worker runs ``python -m rcnnexp`` (torchrun's
    ``-m``), what ``--no-python rcnnexp`` runs where the console script is installed."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "rcnnexp", *args]


def run_torchrun(nproc: int, *args: str, timeout: float = 300
                 ) -> subprocess.CompletedProcess[str]:
    """Run ``rcnnexp ARGS`` in ``nproc`` processes under torchrun; never raises on failure."""
    return subprocess.run(torchrun_command(nproc, *args), cwd=REPO, env=cli_env(), text=True,
                          capture_output=True, timeout=timeout, check=False)


def torchrun_train(nproc: int, run_dir: Path, *args: str) -> dict[str, Any]:
    """``rcnnexp train ARGS`` in ``nproc`` processes into ``run_dir``, which must succeed;
    its results.json."""
    proc = run_torchrun(nproc, "train", *args, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((run_dir / "results.json").read_text())


def start_torchrun(nproc: int, *args: str) -> subprocess.Popen[str]:
    """``rcnnexp ARGS`` under torchrun in the background."""
    return subprocess.Popen(torchrun_command(nproc, *args), cwd=REPO, text=True, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def torchrun_worker(proc: subprocess.Popen[str], rank: int) -> int:
    """The pid of the worker of ``rank`` that the torchrun ``proc`` started (its child with
    ``RANK`` set so; torchrun starts each worker in a session of its own)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        if ppid == proc.pid and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"torchrun {proc.pid} has no worker of rank {rank}")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until ``path`` exists, failing if the process ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def wait_for_state(path: Path, proc: subprocess.Popen[str],
                   ready: Callable[[dict[str, Any]], bool], timeout: float = 120) -> None:
    """Until the checkpoint at ``path`` holds a training state that is ``ready``, failing if
    the process ends first (checkpoints are renamed into place whole: each read is one)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and ready(torch.load(path, weights_only=True)["state"])):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"{path} never held the state waited for"
        time.sleep(0.02)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def job_dir(sweep: Path, num: int) -> Path:
    """The folder of job ``num`` of the sweep in ``sweep``: its number, then its swept values
    (``0_model.K=8``), or the number alone."""
    [folder] = [p for p in sweep.iterdir() if p.is_dir() and job_number(p) == num]
    return folder


def tensorboard_runs(logdir: Path) -> set[str]:
    """The runs ``tensorboard --logdir LOGDIR`` lists: every folder that holds event files,
    by its path below the logdir (``.`` for the logdir itself)."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    return set(mux.Runs())


def scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for the event files in ``tb_dir``: tag -> (step, value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@dataclass
class HParamsTable:
    """TensorBoard's HPARAMS tab for a logdir, as its own plugin serves it to the browser."""

    columns: list[tuple[str, bool]]  # (key, differs) in the order the tab lists them
    metrics: list[str]  # the metric columns' names
    rows: dict[str, dict[str, Any]]  # session (run) -> key or metric name -> value

    @property
    def shown(self) -> list[str]:
        """The columns the tab shows before the user picks any: its first five."""
        return [key for key, _ in self.columns[:5]]


def hparams_table(logdir: Path) -> HParamsTable:
    from google.protobuf import json_format
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import (
        api_pb2,
        backend_context,
        get_experiment,
        list_session_groups,
    )

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    backend = backend_context.Context(base_plugin.TBContext(data_provider=provider))
    request = context.RequestContext()
    # the browser asks for up to 1000 columns (tf-hparams-query-pane)
    exp = get_experiment.Handler(request, backend, "", api_pb2.GetExperimentRequest(
        hparams_limit=1000)).run()
    metric_name = {(m.name.group, m.name.tag): m.display_name
                   or "/".join(p for p in (m.name.group, m.name.tag) if p)
                   for m in exp.metric_infos}
    groups = list_session_groups.Handler(request, backend, "", api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=1000, allowed_statuses=list(api_pb2.Status.values()),
        col_params=[api_pb2.ColParams(hparam=h.name) for h in exp.hparam_infos]
        + [api_pb2.ColParams(metric=m.name) for m in exp.metric_infos])).run()
    rows = {}
    for group in groups.session_groups:
        row: dict[str, Any] = {k: json_format.MessageToDict(v) for k, v in group.hparams.items()}
        row.update({metric_name[m.name.group, m.name.tag]: m.value for m in group.metric_values})
        rows[group.name] = row
    return HParamsTable([(h.name, h.differs) for h in exp.hparam_infos], list(metric_name.values()),
                        rows)


TIME_COLUMNS = {"epoch_time_s", "images_per_s"}


def assert_same_run(a: Path, b: Path) -> None:
    """Two run directories hold the same training: metrics but timings, results, weights and
    the steps TensorBoard shows on every curve."""
    rows_a, rows_b = read_csv(a / "metrics.csv"), read_csv(b / "metrics.csv")
    strip = [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rows_a]
    assert strip == [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rows_b]
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    for key in ("test_top1", "test_top5", "best_val_top1", "best_epoch", "train_loss"):
        assert ra[key] == rb[key], key
    wa = torch.load(a / "checkpoints" / "last.pt", weights_only=True)["model"]
    wb = torch.load(b / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    steps = [{tag: [s for s, _ in points] for tag, points in scalars(d / "tb").items()}
             for d in (a, b)]
    assert steps[0] == steps[1]  # every curve, on the step axis and the epoch axis
    assert steps[0]["train/lr"] and steps[0]["epoch/train/loss"]


def flip_a_byte(path: Path, entry_suffix: str = "data/0") -> None:
    """Invert one byte inside the stored bytes of a tensor of the checkpoint at ``path``."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(entry_suffix))
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:
                                                   info.header_offset + 30])
    raw[info.header_offset + 30 + name_len + extra_len + 5] ^= 0xFF
    path.write_bytes(bytes(raw))


def write_run_files(directory: Path, overrides: Sequence[str], *,
                    config_changes: dict[str, Any] | None = None,
                    **results: Any) -> Path:
    """A finished run's files without training it, for what reads runs (the report):
    ``.hydra/config.yaml`` as ``rcnnexp train OVERRIDES`` composes it today (unresolved, as
    Hydra writes it), less ``config_changes`` (dotted key -> value; None deletes the key),
    and a results.json holding the overrides, a CPU fp32 run's identity, its preset's
    paper row and ``results`` (its ``dataset``, metrics, ...)."""
    cfg = compose_config(list(overrides))
    plain = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    assert isinstance(plain, dict)
    for key, value in (config_changes or {}).items():
        *parents, leaf = key.split(".")
        node = functools.reduce(lambda tree, k: tree[k], parents, plain)
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    (directory / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(plain), directory / ".hydra" / "config.yaml")
    experiment = next((o.partition("=")[2] for o in overrides
                       if o.startswith("experiment=")), None)
    paper = plain.get("paper")
    identity = {"experiment": experiment, "device": "cpu", "precision": "fp32",
                "tf32": False, "seed": 0, "overrides": list(overrides),
                "run_dir": str(directory),
                "paper": paper and {k: paper[k] for k in ("paper", "table", "row")}}
    (directory / "results.json").write_text(json.dumps({**identity, **results}))
    return directory


# quick settings for end-to-end runs on the digits: RCNN-8, one epoch of a few batches
QUICK = ("model.K=8", "model.T=1", "trainer.epochs=1", "trainer.batch_size=128",
         "trainer.progress=false", CPU)
# RCNN-8 on the digits at batch 32: 39 steps an epoch, seconds on one core
SMALL_RUN = ("model.K=8", "model.T=1", "trainer.batch_size=32", "trainer.progress=false", CPU)


def train_in_process(run_dir: Path, *overrides: str) -> None:
    """``rcnnexp train SMALL_RUN OVERRIDES`` in this process, where a test's patch of the
    engine (a clock, a signal sent from a step) reaches it.

    A run that resumes one started in this process waits for the next wall-clock second
    first: an event file is named by the second it opens in and then by a counter of this
    process, and TensorBoard reads a folder's files in name order, so a second file opened in
    the same second as the tenth (``...27204.10`` before ``...27204.9``) would be read first
    and its steps purged as out of order. A resume in a new process (the only kind a user
    makes) never shares the first one's second and counter."""
    if (run_dir / "tb").exists():
        time.sleep(1.0 - time.time() % 1.0)
    train(compose_config([*SMALL_RUN, *overrides]), RunContext(run_dir=run_dir))


# AlexNet's and C-RNN's layers narrowed to 8 channels (fc6-7: 16 units): seconds on a CPU
TINY_ALEXNET = ("model.channels=[8,8,8,8,8]", "model.fc=16")
TINY_CRNN = (*TINY_ALEXNET, "model.hidden=8")


def pretend_torch(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    """This process's torch reports ``version`` until the test ends: what a refusal that
    depends on the torch version sees on another machine (``torch.__version__`` is a
    TorchVersion, which compares with strings)."""
    monkeypatch.setattr(torch, "__version__", torch.torch_version.TorchVersion(version))


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch thread inside, the previous number after. Runs compared bit for bit must
    use the same number of threads, and a module-scoped fixture is set up before the
    function-scoped one_thread below: it takes this itself."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process tests use one torch thread: their ops are tiny, and on a shared CPU a
    second spinning thread only waits (the CLI subprocesses get the same through cli_env).
    An in-process run chooses its threads (trainer.threads=null) by OMP_NUM_THREADS first."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def backends_restored() -> Iterator[None]:
    """In-process runs set process-wide flags (acceleration.configure_backends: deterministic
    algorithms, TF32, cuDNN autotuning; Inductor's eager random numbers): undo them."""
    import torch._inductor.config as inductor

    before = (torch.are_deterministic_algorithms_enabled(), torch.get_float32_matmul_precision(),
              torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
              inductor.fallback_random)
    yield
    torch.use_deterministic_algorithms(before[0])
    torch.set_float32_matmul_precision(before[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = before[2:4]
    inductor.fallback_random = before[4]


@pytest.fixture(scope="module")
def quick_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``checkpoints/last.pt`` of RCNN-8 trained one epoch on the digits (QUICK: 8x8 grey
    images, 10 classes), one run per test file that asks for it."""
    run_dir = tmp_path_factory.mktemp("quick-checkpoint") / "run"
    proc = run_cli("train", *QUICK, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return run_dir / "checkpoints" / "last.pt"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests skip themselves where CUDA is absent."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every dataset's tiny files (tests/tiny_data.py), written once for the whole session;
    tests read them and must not change them (write your own with the tiny_data writers)."""
    from tiny_data import write_all

    path = tmp_path_factory.mktemp("tiny-data")
    write_all(path)
    return path


def build_dataset(name: str, root: Path, *overrides: str) -> Any:
    """``dataset=NAME`` on the tiny files under ``root`` (tests/tiny_data.py), composed,
    validated and built as a run does: the DataModule, not set up yet."""
    from tiny_data import TINY_OVERRIDES

    from rcnnexp.config import validate
    from rcnnexp.engine.build import build_data

    cfg = compose_config([f"dataset={name}", f"dataset.root={root}", "dataset.download=false",
                          *TINY_OVERRIDES[name], *overrides])
    validate(cfg)
    return build_data(cfg.dataset)


def load_dataset(name: str, root: Path, *overrides: str, workers: int = 0,
                 device: str = "cpu") -> Any:
    """:func:`build_dataset`, set up on ``device`` with ``workers`` loader processes."""
    data = build_dataset(name, root, *overrides)
    data.setup(torch.device(device), workers)
    return data
