"""Several processes training one model: one process group, DistributedDataParallel, and
the few collectives the engine needs, all of them torch.distributed's.

``torchrun`` (or a cluster's launcher, :mod:`rcnnexp.engine.cluster`) starts one process per
device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`join_process_group` turns them into the default process group (NCCL
between GPUs, gloo between CPU processes). Every function here is the identity, or its
obvious one-process meaning, when no group exists, so the engine calls them unconditionally
and a one-process run does exactly what it did before.

What is not done here: SyncBatchNorm on CPU. torch's ``SyncBatchNorm.forward`` raises
``ValueError: SyncBatchNorm expected input tensor to be on GPU ...`` for a CPU input in
training mode (torch 2.14), so on gloo each rank keeps its own BatchNorm batch statistics
(DDP still broadcasts rank 0's running statistics at every forward, and
:func:`broadcast_buffers` before each evaluation).
"""

from __future__ import annotations

import atexit
import datetime
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from rcnnexp.errors import ConfigError, UserError

T = TypeVar("T")

# How long a rank waits in a collective for the others. torchrun ends the whole job as soon
# as one worker dies; this bounds the wait where nothing does (srun, a rank stuck in I/O).
# It must outlast the longest stretch one rank works alone: rank 0 writing a checkpoint,
# a first step's compilation.
TIMEOUT = datetime.timedelta(minutes=15)


def is_distributed() -> bool:
    """Whether this process is one of several in a process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def backend_name() -> str | None:
    """The process group's backend (``gloo``, ``nccl``), None for one process."""
    return str(dist.get_backend()) if is_distributed() else None


def join_process_group(device: torch.device, world_size: int) -> None:
    """Create the default process group from torchrun's environment, once per process
    (``world_size`` > 1; nothing for one process). NCCL on CUDA, gloo on CPU."""
    if world_size <= 1 or (dist.is_available() and dist.is_initialized()):
        return
    if not dist.is_available():
        raise ConfigError(f"WORLD_SIZE={world_size}, but this PyTorch build has no "
                          "torch.distributed: run one process, or install a build with it")
    cuda = device.type == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT,
                            device_id=device if cuda else None)
    # NCCL warns at exit about a group never destroyed; a clean exit destroys it
    atexit.register(leave_process_group)


def leave_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def finish_together() -> None:
    """Wait for every rank to finish, then leave the group: a rank that tears its group down
    while another is still writing (rank 0: results.json) breaks the other's connection,
    and gloo then aborts that process at exit ("terminate called without an active
    exception", SIGABRT) although its run succeeded."""
    if is_distributed():
        dist.barrier()
        leave_process_group()


def launcher_words() -> list[str]:
    """The words before ``rcnnexp`` that start this run's processes again: none for one
    process, or for tasks a cluster started (SLURM requeues them as they were); torchrun's,
    with the processes per node it started (and the nodes, whose rendezvous options are the
    user's own), for a run torchrun started."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1 or "TORCHELASTIC_RUN_ID" not in os.environ:
        return []
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    nodes = [] if local == world else [f"--nnodes={world // local}"]
    return ["torchrun", *nodes, f"--nproc_per_node={local}", "--no-python"]


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """``trainer.batch_size`` is the global batch: each of the ranks takes an equal share."""
    if batch_size % world_size:
        raise ConfigError(f"trainer.batch_size={batch_size} is the global batch and must be "
                          f"divisible by the world size {world_size} (WORLD_SIZE, the "
                          f"processes torchrun started): choose a multiple of {world_size}")
    return batch_size // world_size


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The module the training forward calls: ``model`` itself for one process, else
    ``model`` in DistributedDataParallel, its BatchNorms made SyncBatchNorms on CUDA.

    The conversion replaces ``model``'s BatchNorm children in place (the new modules hold
    the same parameters and buffers, under the same names), so ``model`` stays what is
    checkpointed and evaluated and the DDP wrapper is only the training forward."""
    if not is_distributed():
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over all ranks, in place (unchanged for one process)."""
    if is_distributed():
        dist.all_reduce(values)
    return values


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: the model every rank
    then evaluates is the one rank 0 checkpoints."""
    if is_distributed():
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` (any picklable value) on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def gather_objects(obj: T) -> list[T] | None:
    """Every rank's ``obj``, in rank order, on rank 0 (None on the others)."""
    if not is_distributed():
        return [obj]
    out: list[T] | None = [obj] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, 0)
    return out


def main_decides(decide: Callable[[], T]) -> T:
    """``decide()`` run on rank 0 only, its result (or the user error it raised) given to
    every rank: what all ranks must agree on (which checkpoint to resume from), decided once,
    and a refusal on rank 0 ends every rank rather than leaving them waiting."""
    if not is_distributed():
        return decide()
    outcome: tuple[bool, Any] = (True, None)
    if dist.get_rank() == 0:
        try:
            outcome = (True, decide())
        except UserError as err:
            outcome = (False, err)
    ok, value = broadcast_object(outcome)
    if not ok:
        raise value
    return value


__all__ = ["TIMEOUT", "all_reduce_sum", "broadcast_buffers", "broadcast_object",
           "finish_together", "gather_objects", "is_distributed", "join_process_group",
           "launcher_words", "leave_process_group", "main_decides", "per_rank_batch", "wrap"]
