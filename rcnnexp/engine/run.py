"""The engine's three entry points, one per command: train, evaluate a checkpoint, describe.

Each takes a composed config (and what the CLI knows about the run); everything family- or
dataset-specific is reached through the config's ``_target_``s (:mod:`rcnnexp.engine.build`).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from rcnnexp.config import Config, to_plain, validate, with_new_keys
from rcnnexp.data.base import DataModule, DataSpec
from rcnnexp.engine.acceleration import accelerate, check_compile, configure_backends
from rcnnexp.engine.build import (
    build_data,
    build_model,
    build_optimizer,
    build_schedule,
    count_params,
)
from rcnnexp.engine.checkpoint import TRAINING_KEYS, load_checkpoint, load_model_state
from rcnnexp.engine.cluster import use_slurm_environment
from rcnnexp.engine.distributed import (
    backend_name,
    broadcast_object,
    finish_together,
    launcher_words,
    main_decides,
    per_rank_batch,
    wrap,
)
from rcnnexp.engine.evaluate import evaluate
from rcnnexp.engine.finetune import apply_finetune
from rcnnexp.engine.hparams import hparams_of
from rcnnexp.engine.logger import RunLogger
from rcnnexp.engine.progress import Progress, log_to_files
from rcnnexp.engine.results import summarize
from rcnnexp.engine.resume import (
    Interrupted,
    ResumePoint,
    StopRequest,
    check_same_run,
    deferred_interrupts,
    finished_tune,
    resume_hint,
    resume_point,
)
from rcnnexp.engine.runtime import Runtime, make_runtime, rank_seed, seed_everything
from rcnnexp.engine.stages import Stage, plan_stages, stage_results
from rcnnexp.engine.summary import count_flops, layer_table
from rcnnexp.engine.threads import TRAIN_STEP_FACTOR, apply_threads, choose_threads
from rcnnexp.engine.trainer import Trainer, train_steps_per_epoch
from rcnnexp.errors import CheckpointError, ConfigError, UserError

log = logging.getLogger("rcnnexp")


@dataclass
class RunContext:
    """What the CLI knows about a run beyond its config."""

    run_dir: Path
    overrides: list[str] = field(default_factory=list)  # the command line's overrides
    choices: dict[str, str] = field(default_factory=dict)  # group -> chosen option
    # the command that continues the run after an interrupt, where it is more than the run
    # itself: a sweep's job names its sweep's (the CLI's); None: the run's own command
    continue_command: list[str] | None = None


# -- train --------------------------------------------------------------------------------------
def train(cfg: DictConfig, ctx: RunContext) -> dict[str, Any]:
    """Train (or continue training) the configured model; returns results.json's content.

    A run has one stage, or two with ``trainer.retrain`` (:mod:`rcnnexp.engine.stages`);
    it (re)starts at the stage and checkpoint :func:`resume_point` finds.
    """
    use_slurm_environment()  # a SLURM task's rank, before any runtime is made
    typed = validate(cfg)
    stages = plan_stages(ctx.run_dir, typed.trainer.retrain)
    point = shared_resume_point(stages, typed.trainer.resume)
    tune = finished_tune(stages, point)
    results: dict[str, Any] = {}
    for index in range(point.stage, len(stages)):
        stage = stages[index] if tune is None else stages[index].with_tune(tune)
        resumed = point if index == point.stage else None
        results = train_stage(cfg, typed, ctx, stage, resumed.checkpoint if resumed else None,
                              resumed.path if resumed else None)
        if stage.name == "tune":
            tune = results
    finish_together()
    return results


def shared_resume_point(stages: list[Stage], resume: str | None) -> ResumePoint:
    """:func:`resume_point` as rank 0 finds it, on every rank: all ranks continue from the
    same checkpoint file (each reads it), and rank 0's refusal ends them all."""
    found: list[ResumePoint] = []  # rank 0's own, checkpoint loaded

    def decide() -> tuple[int, Path | None]:
        found.append(resume_point(stages, resume))
        return found[0].stage, found[0].path

    stage, path = main_decides(decide)
    if found:
        return found[0]
    return ResumePoint(stage, path,
                       None if path is None else load_checkpoint(path, needs=TRAINING_KEYS))


def shared_run_dir(cfg: DictConfig, run_dir: str) -> Path:
    """The run directory rank 0 resolved, on every rank, once all ranks have joined their
    process group (one process: ``run_dir`` itself).

    Hydra resolves its default directory, ``${now:...}``, in each process, so ranks that
    start a second apart would each train into their own; torchrun's environment holds no
    shared start time to derive one from, and rank 0's choice keeps any pattern the user set.
    """
    typed = validate(cfg)
    make_runtime(typed.trainer.device.value, typed.trainer.precision.value)
    return Path(broadcast_object(run_dir))


def check_run(cfg: DictConfig, run_dir: Path) -> None:
    """Every refusal a run can meet before its first epoch, made before anything is written.

    The CLI calls this before the run directory is created or its ``.hydra/`` replaced, so a
    refused run leaves no trace and repeating the command after fixing it just works. It
    sets up the first stage's data once to see that it is there and fits the run (the
    training then sets it up again: a cost of seconds, against a directory left half made).
    """
    typed = validate(cfg)
    runtime = make_runtime(typed.trainer.device.value, typed.trainer.precision.value)
    per_rank_batch(typed.trainer.batch_size, runtime.world_size)
    check_compile(typed.trainer, runtime.device.type)
    stages = plan_stages(run_dir, typed.trainer.retrain)
    point = resume_point(stages, typed.trainer.resume)
    tune = finished_tune(stages, point)
    stage = stages[point.stage] if tune is None else stages[point.stage].with_tune(tune)
    if point.checkpoint is not None:
        assert point.path is not None
        check_same_run(point.checkpoint, to_plain(cfg), point.path,
                       device_type=runtime.device.type)
    data = build_data(cfg.dataset)
    data.setup(torch.device("cpu"), 0, merge_validation=stage.merge_validation)
    check_data_for_stage(cfg, data, stage, typed.trainer.batch_size, runtime.world_size)
    if typed.finetune.checkpoint:
        # the run's own loading of the trained model (its file, its weights' shapes, the
        # parts named trainable), here on a model built only to be thrown away
        apply_finetune(build_model(cfg.model, data.spec), typed.finetune.checkpoint,
                       typed.finetune.trainable)


def train_stage(cfg: DictConfig, typed: Config, ctx: RunContext, stage: Stage,
                ckpt: dict[str, Any] | None, source: Path | None) -> dict[str, Any]:
    """One stage: build everything from the seed, train (or continue from ``ckpt``), and
    write the stage's results.json into its directory."""
    tc = dataclasses.replace(typed.trainer, epochs=stage.epochs(typed.trainer.epochs))
    runtime = make_runtime(tc.device.value, tc.precision.value)
    seed_everything(rank_seed(tc.seed, runtime.rank))
    configure_backends(tc, runtime.device)

    data = build_data(cfg.dataset)
    model = build_model(cfg.model, data.spec).to(runtime.device)
    if typed.finetune.checkpoint:
        apply_finetune(model, typed.finetune.checkpoint, typed.finetune.trainable)
    flops = count_flops(model, data.spec)
    batch = per_rank_batch(tc.batch_size, runtime.world_size)
    threads = choose_threads(tc.threads, TRAIN_STEP_FACTOR * flops * batch, runtime.device.type)
    apply_threads(threads)
    data.setup(runtime.device, tc.workers, merge_validation=stage.merge_validation)
    check_data_for_stage(cfg, data, stage, tc.batch_size, runtime.world_size)
    iters = train_steps_per_epoch(data, batch, runtime.world_size, tc.limit_batches)
    # what a step calls (compiled, then DDP around it); the plain model is what is saved
    train_model = wrap(accelerate(model, tc, runtime.device), runtime.device)
    optimizer = build_optimizer(cfg.optim, model)
    schedule = build_schedule(stage.schedule(cfg.schedule), optimizer, iters, tc.epochs)

    plain = to_plain(cfg)
    meta: dict[str, Any] = {"config": plain, "overrides": list(ctx.overrides),
                            "arch": model.arch, "stage": stage.name}
    if stage.tune is not None:
        meta["tune"] = stage.tune
    if ckpt is not None:
        assert source is not None
        check_same_run(ckpt, plain, source, device_type=runtime.device.type)
    # TensorBoard drops what an interrupted run logged after the checkpoint it resumes
    # from (everything, when it starts the stage over)
    purge_step = ckpt["state"]["step"] + 1 if ckpt else 0
    logger = RunLogger(stage.directory, enabled=runtime.is_main, purge_step=purge_step)
    progress = Progress(log, enabled=runtime.is_main, epochs=tc.epochs,
                        start_epoch=ckpt["state"]["epoch"] if ckpt else 0,
                        bars=None if tc.progress else False)
    trainer = Trainer(model, data, optimizer, schedule, runtime, tc, logger, progress,
                      stage.directory / "checkpoints", meta, train_model=train_model)
    if ckpt is not None:
        trainer.restore(ckpt, source)
        after = (f"batch {trainer.state.batch} of epoch {trainer.state.epoch + 1}"
                 if trainer.state.batch else f"epoch {trainer.state.epoch}")
        progress.info(f"resumed from {source} after {after}")
    else:
        logger.hparams(hparams_of(plain, ctx.choices))

    if runtime.is_main:
        if stage.label:
            log.info("%s: %s training images%s", stage.label,
                     f"{data.num_examples('train'):,}", retrain_note(stage))
        log.info("%s on %s: %s parameters, %s FLOPs/image; %d epochs of %d steps on %s, %s",
                 model.arch, ctx.choices.get("dataset", type(data).__name__),
                 f"{count_params(model):,}", f"{flops:,}", tc.epochs, iters,
                 where_it_runs(runtime), threads.describe())
        if tc.limit_batches is not None:
            log.info("a check run (trainer.limit_batches=%d): at most %d batches an epoch and "
                     "a split's evaluation; its results are not a real run's",
                     tc.limit_batches, tc.limit_batches)
    stop: StopRequest | None = None
    try:
        with deferred_interrupts() as stop:
            trainer.fit(stop)
    except (KeyboardInterrupt, Interrupted) as err:
        logger.close()
        progress.close()
        code = err.exit_code if isinstance(err, Interrupted) else 130
        where = f"{stage.name}, " if stage.label else ""
        saved = (stage.directory / "checkpoints" / "last.pt").exists()
        done = trainer.state.epoch
        when = f"in {where}epoch {done + 1}" if done < tc.epochs else (
            f"after the last epoch ({where}{done}), before the run's results were written")
        # one line on stderr, worded as a signal before training is (rcnnexp.cli), and in
        # train.log: the run stopped rather than finished, and this is how to go on
        signame = str(err) if isinstance(err, Interrupted) else "SIGINT"
        line = (f"interrupted by {'Ctrl-C (SIGINT)' if signame == 'SIGINT' else signame} "
                f"{when}; " + resume_hint(ctx.overrides, ctx.run_dir,
                                          saved or stage.name == "retrain", launcher_words(),
                                          ctx.continue_command))
        if runtime.is_main:
            print(line, file=sys.stderr)
            log_to_files(log, line)
        if stop is not None:
            stop.pass_on()  # a job that submitit watches is requeued here, and exits
        raise SystemExit(code) from None
    except UserError:  # a full disk, a diverged loss: keep what TensorBoard was given
        logger.close()
        progress.close()
        raise
    progress.close()

    identity = {**ctx.choices, "overrides": ctx.overrides, "run_dir": ctx.run_dir}
    results = summarize(typed, identity, model, flops, trainer, threads.count)
    results["stage"] = stage.name
    results["schedule_replay"] = schedule.replay()
    if stage.tune is not None:
        results = stage_results(stage.tune, results)
    if runtime.is_main:
        logger.final_metrics(results, trainer.state.step)
        logger.json("results.json", results)
    logger.close()
    return results


def where_it_runs(runtime: Runtime) -> str:
    """``cpu``, ``cuda:0``, or ``cpu, 2 processes (gloo)`` for a torchrun run: the banner's."""
    if runtime.world_size == 1:
        return str(runtime.device)
    return f"{runtime.device.type}, {runtime.world_size} processes ({backend_name()})"


def check_data_for_stage(cfg: DictConfig, data: DataModule, stage: Stage, batch_size: int,
                         world_size: int = 1) -> None:
    """What a stage needs of the data: a validation split to tune on or to monitor, and
    at least one training batch (of ``batch_size`` images over all ``world_size`` ranks)."""
    if data.num_train_batches(per_rank_batch(batch_size, world_size), world_size) == 0:
        raise ConfigError(f"trainer.batch_size={batch_size} is larger than the "
                          f"{data.num_examples('train')} training images: choose a smaller one")
    if stage.name == "tune" and "val" not in data.splits:
        raise ConfigError("trainer.retrain=true tunes on a validation split first, and this "
                          "dataset has none: give it one (dataset options: val_split, "
                          "val_fraction) or set trainer.retrain=false")
    monitor = stage.schedule(cfg.schedule).get("monitor")
    if monitor and monitor.startswith("val_") and "val" not in data.splits:
        raise ConfigError(f"schedule.monitor={monitor}, but this dataset has no validation "
                          "split: give it one (dataset options) or monitor train_loss")


def retrain_note(stage: Stage) -> str:
    if stage.tune is None:
        return ""
    replay = stage.tune.get("schedule_replay")
    cuts = "" if replay is None else (
        f", learning rate / {replay['factor']:g} after epochs "
        f"{', '.join(map(str, replay['milestones'])) or '(none)'}")
    return f" (train + val), {stage.tune['epochs']} epochs as stage 1{cuts}"


# -- eval ---------------------------------------------------------------------------------------
def evaluate_checkpoint(cfg: DictConfig, checkpoint: Path, split: str) -> dict[str, Any]:
    """Load ``checkpoint`` into the configured model and evaluate it on ``split``."""
    typed = validate(cfg)
    ckpt = load_checkpoint(checkpoint)
    runtime = make_runtime(typed.trainer.device.value, typed.trainer.precision.value)
    configure_backends(typed.trainer, runtime.device)
    data = build_data(cfg.dataset)
    check_same_data_shape(ckpt, data.spec, checkpoint)
    model = build_model(cfg.model, data.spec).to(runtime.device)  # eager, as training evaluates
    load_model_state(model, ckpt["model"], str(checkpoint))
    apply_threads(choose_threads(typed.trainer.threads, count_flops(model, data.spec)
                                 * typed.trainer.eval_batch_size, runtime.device.type))
    data.setup(runtime.device, typed.trainer.workers)
    if split not in data.splits:
        raise ConfigError(f"split={split}: this dataset has only {', '.join(data.splits)}")
    start = time.perf_counter()
    metrics = evaluate(model, data, split, typed.trainer.eval_batch_size, runtime)
    finish_together()
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


def check_same_data_shape(ckpt: dict[str, Any], spec: DataSpec, checkpoint: Path) -> None:
    """Refuse to evaluate a checkpoint on data of another shape than it was trained on.

    A model pooled globally takes images of any size, so its weights load without a word
    into a model built for other images (the digits' 8x8 model on MNIST's 28x28) and score
    near chance; the checkpoint's stored config says what its data looked like.
    """
    stored = with_new_keys(ckpt.get("config", {})).get("dataset")
    if not isinstance(stored, dict) or "_target_" not in stored:
        return  # a checkpoint without its config: its weights' shapes are still checked
    trained = build_data(OmegaConf.create(stored)).spec
    if trained == spec:
        return

    def shape(s: DataSpec) -> str:
        return (f"{'x'.join(map(str, (s.in_channels, *s.image_size)))} images, "
                f"{s.num_classes} classes")

    name = str(stored["_target_"]).rpartition(".")[2]
    raise CheckpointError(
        f"checkpoint={checkpoint} was trained on {name} data ({shape(trained)}), and this "
        f"evaluation's data gives {shape(spec)}: its score there would mean nothing; "
        "evaluate it on data of the shape it was trained on (leave out the dataset overrides "
        "that change it)")


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


def missing_data(cfg: DictConfig) -> str | None:
    """What of the configured dataset's files is not on disk (:meth:`DataModule.missing
    <rcnnexp.data.base.DataModule.missing>`); None: nothing. Looks only: no read, no
    download, nothing written."""
    return build_data(cfg.dataset).missing()


__all__ = ["RunContext", "check_run", "describe", "evaluate_checkpoint", "missing_data",
           "shared_run_dir", "train"]
