"""Schema of the ``trainer`` group: how long, on what, at which precision, how to resume."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from rcnnexp.config.checks import non_negative, positive, require, seed


class Device(str, Enum):
    auto = "auto"  # cuda when available, else cpu
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"  # autocast to bfloat16
    fp16 = "fp16"  # autocast to float16, with a gradient scaler


@dataclass
class TrainerConfig:
    epochs: int = 30  # passes over the training images
    batch_size: int = 64  # training images per optimizer step, over all torchrun processes
    eval_batch_size: int = 256  # views per evaluation batch (at least one image)
    device: Device = Device.auto
    precision: Precision = Precision.fp32
    # seeds initialisation, batch order and augmentation (the splits: dataset.split_seed)
    seed: int = 0
    # deterministic algorithms (torch.use_deterministic_algorithms); a resumed run on CPU
    # then ends exactly where an uninterrupted one does
    deterministic: bool = True
    eval_every: int = 1  # epochs between evaluations of val and test (and the last epoch)
    log_every: int = 10  # iterations between step-level TensorBoard scalars
    workers: int = 4  # DataLoader worker processes, for datasets that read files
    progress: bool = True  # tqdm bars on a terminal; plain lines otherwise
    # RCNN's protocol: train with the validation split (stage 1), then retrain from scratch
    # on training + validation images for as many epochs, the learning rate set as stage 1
    # set it; the results are stage 2's (rcnnexp/engine/stages.py)
    retrain: bool = False
    # null: a fresh run; "auto": continue from checkpoints/last.pt in this run directory
    # when it exists; a path: continue from that checkpoint
    resume: str | None = None

    def __post_init__(self) -> None:
        positive("trainer.epochs", self.epochs)
        positive("trainer.batch_size", self.batch_size)
        positive("trainer.eval_batch_size", self.eval_batch_size)
        positive("trainer.eval_every", self.eval_every)
        positive("trainer.log_every", self.log_every)
        non_negative("trainer.workers", self.workers)
        seed("trainer.seed", self.seed)
        require(self.resume != "", "trainer.resume must be null, 'auto' or a checkpoint path")
