"""The engine's three entry points, one per command: train, evaluate a checkpoint, describe.

Each takes a composed config (and what the CLI knows about the run); everything family- or
dataset-specific is reached through the config's ``_target_``s (:mod:`rcnnexp.engine.build`).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rcnnexp.config import Config, to_plain, validate
from rcnnexp.config.root import PaperResult
from rcnnexp.data.base import DataModule
from rcnnexp.engine.build import (
    build_data,
    build_model,
    build_optimizer,
    build_schedule,
    count_params,
)
from rcnnexp.engine.checkpoint import config_differences, load_checkpoint, load_model_state
from rcnnexp.engine.evaluate import evaluate
from rcnnexp.engine.logger import RunLogger, flatten
from rcnnexp.engine.progress import Progress
from rcnnexp.engine.runtime import make_runtime, seed_everything
from rcnnexp.engine.summary import count_flops, layer_table
from rcnnexp.engine.trainer import Trainer
from rcnnexp.errors import CheckpointError, ConfigError
from rcnnexp.models.base import ImageClassifier

log = logging.getLogger("rcnnexp")

# keys that may differ between a checkpoint and the run that resumes it
RESUMABLE_CHANGES = ("trainer.resume", "trainer.progress", "trainer.workers", "trainer.device",
                     "trainer.eval_batch_size", "trainer.log_every", "trainer.epochs")


@dataclass
class RunContext:
    """What the CLI knows about a run beyond its config."""

    run_dir: Path
    overrides: list[str] = field(default_factory=list)  # the command line's overrides
    choices: dict[str, str] = field(default_factory=dict)  # group -> chosen option


class Interrupted(BaseException):
    """SIGTERM or Ctrl-C during training (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


# -- train --------------------------------------------------------------------------------------
def train(cfg: DictConfig, ctx: RunContext) -> dict[str, Any]:
    """Train (or continue training) the configured model; returns results.json's content."""
    typed = validate(cfg)
    tc = typed.trainer
    run_dir = ctx.run_dir
    resume_from = resolve_resume(tc.resume, run_dir)
    runtime = make_runtime(tc.device.value, tc.precision.value)
    seed_everything(tc.seed, tc.deterministic)

    data = build_data(cfg.dataset)
    model = build_model(cfg.model, data.spec).to(runtime.device)
    if typed.finetune.checkpoint:
        apply_finetune(model, typed.finetune.checkpoint, typed.finetune.trainable)
    flops = count_flops(model, data.spec)
    data.setup(runtime.device, tc.workers)
    check_monitor(cfg, data)
    iters = data.num_train_batches(tc.batch_size, runtime.world_size)
    if iters == 0:
        raise ConfigError(f"trainer.batch_size={tc.batch_size} is larger than the "
                          f"{data.num_examples('train')} training images: choose a smaller one")
    optimizer = build_optimizer(cfg.optim, model.parameters())
    schedule = build_schedule(cfg.schedule, optimizer, iters, tc.epochs)

    plain = to_plain(cfg)
    ckpt_meta = {"config": plain, "overrides": list(ctx.overrides), "arch": model.arch}
    ckpt = None
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from)
        check_same_run(ckpt, plain, resume_from)
    # everything logged after the checkpoint (steps > its step) is dropped by TensorBoard
    purge_step = ckpt["state"]["step"] + 1 if ckpt else None
    logger = RunLogger(run_dir, enabled=runtime.is_main, purge_step=purge_step)
    progress = Progress(log, enabled=runtime.is_main, epochs=tc.epochs,
                        start_epoch=ckpt["state"]["epoch"] if ckpt else 0,
                        bars=None if tc.progress else False)
    trainer = Trainer(model, data, optimizer, schedule, runtime, tc, logger, progress,
                      run_dir / "checkpoints", ckpt_meta)
    if ckpt is not None:
        trainer.restore(ckpt, str(resume_from))
        progress.info(f"resumed from {resume_from} after epoch {trainer.state.epoch}")
    else:
        logger.hparams(hparams_of(plain, typed))

    params = count_params(model)
    if runtime.is_main:
        log.info("%s on %s: %s parameters, %s FLOPs/image; %d epochs of %d steps on %s",
                 model.arch, ctx.choices.get("dataset", type(data).__name__), f"{params:,}",
                 f"{flops:,}", tc.epochs, iters, runtime.device)
    try:
        with _signals_raise_interrupted():
            trainer.fit()
    except (KeyboardInterrupt, Interrupted) as err:
        logger.close()
        progress.close()
        code = err.exit_code if isinstance(err, Interrupted) else 130
        log.info("interrupted (%s) in epoch %d; %s", type(err).__name__ if code == 130 else err,
                 trainer.state.epoch + 1, resume_hint(ctx, trainer.state.epoch))
        raise SystemExit(code) from None
    progress.close()

    results = summarize(typed, ctx, model, params, flops, trainer)
    if runtime.is_main:
        logger.final_metrics(results, trainer.state.step)
        logger.json("results.json", results)
    logger.close()
    return results


def resolve_resume(resume: str | None, run_dir: Path) -> Path | None:
    """Which checkpoint to continue from, refusing to start over an earlier run."""
    last = run_dir / "checkpoints" / "last.pt"
    if resume is None:
        if last.exists() or (run_dir / "results.json").exists():
            raise ConfigError(f"run directory {run_dir} already holds a run; continue it with "
                              "trainer.resume=auto, or start a new run in another directory "
                              "(hydra.run.dir=...)")
        return None
    if resume == "auto":
        return last if last.exists() else None
    path = Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt" if (path / "checkpoints").is_dir() else path
    if not path.is_file():
        raise CheckpointError(f"trainer.resume={resume}: no checkpoint there (expected a .pt "
                              "file such as <run dir>/checkpoints/last.pt, or 'auto')")
    return path


def check_same_run(ckpt: dict[str, Any], plain: dict[str, Any], source: Path) -> None:
    """A resumed run must be configured as the run that wrote the checkpoint."""
    diffs = [d for d in config_differences(ckpt.get("config", {}), plain)
             if not d.startswith(RESUMABLE_CHANGES)]
    if not diffs:
        return
    overrides = " ".join(ckpt.get("overrides", [])) or "(none)"
    raise CheckpointError(
        f"checkpoint {source} was written by a run with another config:\n  "
        + "\n  ".join(diffs[:10])
        + f"\nResume with the overrides that run started with: {overrides}")


def check_monitor(cfg: DictConfig, data: DataModule) -> None:
    monitor = cfg.schedule.get("monitor")
    if monitor and monitor.startswith("val_") and "val" not in data.splits:
        raise ConfigError(f"schedule.monitor={monitor}, but this dataset has no validation "
                          "split: give it one (dataset options) or monitor train_loss")


def apply_finetune(model: ImageClassifier, checkpoint: str, trainable: list[str] | None
                   ) -> None:
    """Load a trained model's weights but its classifier, then freeze all parts not named."""
    state = load_checkpoint(checkpoint)["model"]
    classifier_keys = {f"classifier.{k}" for k in model.classifier.state_dict()}
    body = {k: v for k, v in state.items() if k not in classifier_keys}
    own = {k: v for k, v in model.state_dict().items() if k in classifier_keys}
    load_model_state(model, {**body, **own}, f"finetune.checkpoint={checkpoint}")
    if trainable is None:
        return
    parts = model.parts()
    unknown = [name for name in trainable if name not in parts]
    if unknown:
        raise ConfigError(f"finetune.trainable names {unknown}, which {model.arch} does not "
                          f"have; its parts are {list(parts)}")
    for name, part in parts.items():
        part.requires_grad_(name in trainable)


def summarize(typed: Config, ctx: RunContext, model: ImageClassifier, params: int, flops: int,
              trainer: Trainer) -> dict[str, Any]:
    """results.json: the run's identity, its best-epoch metrics, and what it cost."""
    state = trainer.state
    history = state.history
    best = next((r for r in history if r["epoch"] == state.best_epoch), history[-1])
    last = history[-1]
    epochs_run = len(history)
    train_time = sum(r["epoch_time_s"] for r in history)
    images = sum(r["images_per_s"] * r["epoch_time_s"] for r in history)
    top1, top5 = best.get("test_top1"), best.get("test_top5")
    results = {
        "name": typed.name,
        "model": ctx.choices.get("model", type(model).__name__),
        "arch": model.arch,
        "dataset": ctx.choices.get("dataset", typed.dataset.__class__.__name__),
        "experiment": ctx.choices.get("experiment"),
        "params": params,
        "trainable_params": count_params(model, trainable_only=True),
        "flops": flops,
        "epochs": epochs_run,
        "best_epoch": state.best_epoch,
        "test_top1": top1,
        "test_top5": top5,
        "test_error": None if top1 is None else 100.0 - top1,
        "test_top5_error": None if top5 is None else 100.0 - top5,
        "best_val_top1": state.best_val_top1,
        "last_test_top1": last.get("test_top1"),
        "train_top1": last["train_top1"],
        "train_loss": last["train_loss"],
        "stopped_early": trainer.stopped_early,
        "wall_s": trainer.elapsed_s,
        "train_s": train_time,
        "images_per_s": images / max(train_time, 1e-9),
        "seed": typed.trainer.seed,
        "device": str(trainer.runtime.device),
        "precision": trainer.runtime.precision,
        "overrides": list(ctx.overrides),
        "run_dir": str(ctx.run_dir),
    }
    results["paper"] = None if typed.paper is None else paper_versus_run(typed.paper, results)
    return results


def paper_versus_run(paper: PaperResult, results: dict[str, Any]) -> dict[str, Any]:
    """The paper's row and numbers for this run's dataset, ours in the same metrics beside them.

    A run on a dataset the row reports nothing for (``experiment=recnet/t2b_e8
    dataset=svhn``) keeps the row with an empty comparison.
    """
    dataset = results.get("dataset")
    compared = []
    for v in paper.values:
        if v.dataset != dataset:
            continue
        ours = results.get(v.metric.value)
        compared.append({"metric": v.metric.value, "value": v.value, "ours": ours,
                         "difference": None if ours is None else ours - v.value})
    return {"paper": paper.paper, "table": paper.table, "row": paper.row, "dataset": dataset,
            "reported_on": sorted({v.dataset for v in paper.values}), "metrics": compared}


def hparams_of(plain: dict[str, Any], typed: Config) -> dict[str, Any]:
    """The hyper-parameters shown in TensorBoard: every config value but bookkeeping."""
    flat = flatten({k: v for k, v in plain.items() if k != "paper"})
    skip = ("trainer.resume", "trainer.progress", "trainer.workers", "trainer.log_every",
            "dataset.root", "dataset.download")
    return {k: v for k, v in flat.items() if not k.startswith(skip) and not k.endswith("_target_")
            } | {"name": typed.name}


def resume_hint(ctx: RunContext, epoch: int) -> str:
    if epoch == 0:
        return "no epoch completed, nothing to resume"
    args = [o for o in ctx.overrides if not o.startswith(("trainer.resume=", "hydra.run.dir="))]
    return ("continue with: rcnnexp train " + " ".join(
        [*args, "trainer.resume=auto", f"hydra.run.dir={ctx.run_dir}"]))


@contextmanager
def _signals_raise_interrupted() -> Iterator[None]:
    """Turn SIGTERM (schedulers, `kill`) into :class:`Interrupted` while training."""

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- eval ---------------------------------------------------------------------------------------
def evaluate_checkpoint(cfg: DictConfig, checkpoint: Path, split: str) -> dict[str, Any]:
    """Load ``checkpoint`` into the configured model and evaluate it on ``split``."""
    typed = validate(cfg)
    ckpt = load_checkpoint(checkpoint)
    runtime = make_runtime(typed.trainer.device.value, typed.trainer.precision.value)
    data = build_data(cfg.dataset)
    model = build_model(cfg.model, data.spec).to(runtime.device)
    load_model_state(model, ckpt["model"], str(checkpoint))
    data.setup(runtime.device, typed.trainer.workers)
    if split not in data.splits:
        raise ConfigError(f"split={split}: this dataset has only {', '.join(data.splits)}")
    start = time.perf_counter()
    metrics = evaluate(model, data, split, typed.trainer.eval_batch_size, runtime)
    return {
        "checkpoint": str(checkpoint),
        "split": split,
        "arch": model.arch,
        "epoch": ckpt["state"]["epoch"],
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "loss": metrics["loss"],
        "error": 100.0 - metrics["top1"],
        "examples": data.num_examples(split),
        "seconds": time.perf_counter() - start,
    }


# -- info ---------------------------------------------------------------------------------------
def describe(cfg: DictConfig) -> tuple[list[tuple[str, str, str, int]], dict[str, Any]]:
    """The layer table and a summary (params, FLOPs) of the configured model; no data read."""
    validate(cfg)
    data = build_data(cfg.dataset)
    spec = data.spec
    model = build_model(cfg.model, spec)
    rows = layer_table(model, spec)
    summary = {
        "arch": model.arch,
        "params": count_params(model),
        "trainable_params": count_params(model, trainable_only=True),
        "flops": count_flops(model, spec),
        "input": [spec.in_channels, *spec.image_size],
        "classes": spec.num_classes,
        "parts": list(model.parts()),
    }
    return rows, summary


__all__ = ["RunContext", "describe", "evaluate_checkpoint", "train"]
