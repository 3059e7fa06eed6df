"""Schema of the ``trainer`` group: how long, on what, at which precision, how to resume."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import Enum
from typing import Any

from rcnnexp.config.checks import non_negative, positive, require, seed


class Device(str, Enum):
    auto = "auto"  # cuda when available, else cpu
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    auto = "auto"  # bf16 on CUDA (tensor cores, no loss scaling), fp32 on CPU (exact resume)
    fp32 = "fp32"
    bf16 = "bf16"  # autocast to bfloat16
    fp16 = "fp16"  # autocast to float16, with a gradient scaler


class Compile(str, Enum):
    """``torch.compile`` of the training model (rcnnexp/engine/acceleration.py): torch's
    modes, ``_`` for ``-`` (Hydra takes an enum's member names)."""

    # eager, the default: a compile costs minutes at the start (and again for each new
    # input shape), worth it for paper-length runs on CUDA
    off = "off"
    default = "default"  # Inductor's fused kernels
    reduce_overhead = "reduce_overhead"  # and CUDA graphs: a step replays as one launch
    max_autotune = "max_autotune"  # and benchmarked kernel choices (a longer compile)

    @property
    def mode(self) -> str:
        """The ``mode`` argument of ``torch.compile``."""
        return self.value.replace("_", "-")


@dataclass
class TrainerConfig:
    epochs: int = 30  # passes over the training images
    # training images per optimizer step, over all torchrun processes (each takes its share)
    batch_size: int = 64
    # images per evaluation batch; a batch holds images x the dataset's test-time views
    # (256 images of 9 views: 2,304 views), so lower it for many views on a small memory
    eval_batch_size: int = 256
    device: Device = Device.auto
    precision: Precision = Precision.auto
    # seeds initialisation, batch order and augmentation (the splits: dataset.split_seed)
    seed: int = 0
    # deterministic algorithms (torch.use_deterministic_algorithms), which make a resumed
    # run on CPU end exactly where an uninterrupted one does; null: on for CPU, off for CUDA
    # (where they would turn off cuDNN's autotuning and make every empty() fill memory)
    deterministic: bool | None = None
    # TF32 tensor-core products for fp32 matmuls and convolutions on CUDA (fp32 sums, a 10-bit
    # mantissa in the products; Ampere and later): several times faster, and well within
    # what training noise hides. No effect on CPU or under bf16/fp16
    tf32: bool = True
    # the model and its input batches in channels_last (NHWC) memory format, which cuDNN's
    # fastest bf16/fp16 convolutions use; off by default: what it gains depends on the model
    # (LRN and recurrent layers convert back), measured by scripts/bench_train.py
    channels_last: bool = False
    compile: Compile = Compile.off
    eval_every: int = 1  # epochs between evaluations of val and test (and the last epoch)
    # false: the test split is never evaluated (a search's trials choose on validation alone)
    eval_test: bool = True
    log_every: int = 10  # iterations between step-level TensorBoard scalars
    workers: int = 4  # DataLoader worker processes, for datasets that read files
    # CPU threads of this process's kernels. null: chosen at the start
    # (rcnnexp/engine/threads.py): OMP_NUM_THREADS where set, else one thread for a step too
    # small to split (two threads on a core another process holds wait on each other: next
    # to two busy processes the default run took 164 s on two, 50 s on one), else the cores
    # this process may use
    threads: int | None = None
    progress: bool = True  # tqdm bars on a terminal; plain lines otherwise
    # RCNN's protocol: train with the validation split (stage 1), then retrain from scratch
    # on training + validation images for as many epochs, the learning rate set as stage 1
    # set it; the results are stage 2's (rcnnexp/engine/stages.py)
    retrain: bool = False
    # null: a fresh run; "auto": continue from checkpoints/last.pt in this run directory
    # when it exists; a path: continue from that checkpoint
    resume: str | None = None
    # also save checkpoints/last.pt inside an epoch every this many steps (null: only at
    # epoch ends), so that a preempted job loses little; it resumes from that batch exactly
    # as from an epoch's end
    checkpoint_every_steps: int | None = None
    # the same every this many minutes (looked at every log_every steps); null: not by time
    checkpoint_every_minutes: float | None = None
    # a check run: at most this many training batches an epoch and evaluation batches a
    # split, to see that a config runs end to end (data, model, schedule, checkpoints,
    # results) in seconds before a long job; results.json says so and the report never
    # counts it in a paper's row. null: every batch (a real run)
    limit_batches: int | None = None

    def __post_init__(self) -> None:
        positive("trainer.epochs", self.epochs)
        positive("trainer.batch_size", self.batch_size)
        positive("trainer.eval_batch_size", self.eval_batch_size)
        positive("trainer.eval_every", self.eval_every)
        positive("trainer.log_every", self.log_every)
        non_negative("trainer.workers", self.workers)
        if self.threads is not None:
            positive("trainer.threads", self.threads)
        seed("trainer.seed", self.seed)
        require(self.resume != "", "trainer.resume must be null, 'auto' or a checkpoint path")
        if self.checkpoint_every_steps is not None:
            positive("trainer.checkpoint_every_steps", self.checkpoint_every_steps)
        if self.checkpoint_every_minutes is not None:
            positive("trainer.checkpoint_every_minutes", self.checkpoint_every_minutes)
        if self.limit_batches is not None:
            positive("trainer.limit_batches", self.limit_batches)


def resolved_precision(precision: str, device_type: str) -> str:
    """``trainer.precision`` on a device: ``auto`` is bf16 on CUDA, fp32 elsewhere."""
    if precision != Precision.auto.value:
        return precision
    return Precision.bf16.value if device_type == "cuda" else Precision.fp32.value


def resolved_deterministic(deterministic: bool | None, device_type: str) -> bool:
    """``trainer.deterministic`` on a device: null is on for CPU, off for CUDA."""
    return device_type != "cuda" if deterministic is None else deterministic


def resolved_settings(plain: dict[str, Any], device_type: str) -> dict[str, Any]:
    """A plain config (a checkpoint's) with ``trainer.precision`` and
    ``trainer.deterministic`` as they resolve on ``device_type``: what the run trains with."""
    out = copy.deepcopy(plain)
    trainer = out.get("trainer")
    if isinstance(trainer, dict):
        if "precision" in trainer:
            trainer["precision"] = resolved_precision(trainer["precision"], device_type)
        if "deterministic" in trainer:
            trainer["deterministic"] = resolved_deterministic(trainer["deterministic"],
                                                              device_type)
    return out
