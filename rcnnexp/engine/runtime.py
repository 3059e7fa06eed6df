"""Where a run executes: device, precision, process rank, and every random-number state.

Nothing here is global: a :class:`Runtime` is made once per run and passed down. Under
``torchrun`` the rank and world size come from the environment it sets; logging and
checkpoint writes happen only where :attr:`Runtime.is_main` holds.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rcnnexp.config.trainer import resolved_precision
from rcnnexp.engine.distributed import join_process_group
from rcnnexp.errors import ConfigError

_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str  # fp32 | bf16 | fp16
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, prints and writes files."""
        return self.rank == 0

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return _AUTOCAST_DTYPES[self.precision]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision for the forward pass, or nothing in fp32."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler for fp16 (disabled, and a no-op, otherwise)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")


def make_runtime(device: str, precision: str) -> Runtime:
    """Resolve ``trainer.device`` (auto|cpu|cuda), ``trainer.precision`` (auto: by device)
    and the process rank from the environment, joining the other processes' group when
    torchrun started several."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda, but no CUDA device is visible here; "
                          "use trainer.device=cpu or trainer.device=auto")
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = torch.device("cuda", local_rank) if device == "cuda" else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    join_process_group(dev, world_size)
    return Runtime(device=dev, precision=resolved_precision(precision, dev.type), rank=rank,
                   world_size=world_size)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (the kernels' flags: acceleration.configure_backends)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """The global seed of process ``rank``: ``seed`` itself on rank 0 (a one-process run is
    seeded as it always was), another stream on each other rank, so that dropout masks
    differ between ranks. The model's initial weights are rank 0's all the same: DDP
    broadcasts them."""
    return (seed + rank * 2_654_435_761) % 2**63


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The generator for one epoch's shuffling (and, in a one-process run, augmentation).

    Derived from (seed, epoch) alone, so an epoch replayed after a resume sees exactly the
    batches and augmentations it saw the first time, whatever happened before; every rank
    of a distributed run draws the same order from it and takes its own share.
    """
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + epoch * 7919 + 17) % 2**63)
    return g


def augmentation_generator(seed: int, epoch: int, rank: int, world_size: int,
                           shuffling: torch.Generator) -> torch.Generator:
    """The generator of one epoch's crops and flips on process ``rank``: ``shuffling``
    itself for one process (as before ranks existed), else one derived from (seed, epoch,
    rank), so that each rank augments its images independently and reproducibly."""
    if world_size == 1:
        return shuffling
    g = torch.Generator(device=shuffling.device)
    g.manual_seed((seed * 1_000_003 + epoch * 7919 + rank * 104_729 + 18) % 2**63)
    return g


def rng_state() -> dict[str, Any]:
    """Every global random state, in types that ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npd = state["numpy"]
    np.random.set_state(("MT19937", npd["key"].numpy().astype(np.uint32), npd["pos"],
                         npd["has_gauss"], npd["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Evaluation mode and no autograd, restoring the previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)
