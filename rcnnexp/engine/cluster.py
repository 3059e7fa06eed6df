"""A SLURM job's tasks as the ranks of one training: the variables torchrun would set.

Under ``torchrun`` every process is told its place in the training by ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, which the runtime reads.
On SLURM the processes are started by SLURM itself, one task per GPU (``srun``, or the
submitit launcher's job arrays: conf/hydra/launcher/slurm.yaml), and each is told the same
in SLURM's own variables (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``,
``SLURM_JOB_NODELIST``). :func:`use_slurm_environment` writes the first from the second,
once, before the runtime is made, so that one code path serves both.
"""

from __future__ import annotations

import os
import zlib

# the ports MASTER_PORT is drawn from when none is set: submitit's own range
# (submitit.helpers.TorchDistributedEnvironment), clear of the well-known ports
PORTS = range(20000, 60000)


def use_slurm_environment() -> dict[str, str]:
    """In a task of a multi-task SLURM job step, set torchrun's variables from SLURM's.

    Nothing is changed outside SLURM, for a job of one task, or where ``RANK`` is already
    set (torchrun started inside a SLURM job has said it all). ``MASTER_ADDR`` is the
    job's first node; ``MASTER_PORT``, unless set, is drawn from the job's id, so that every
    task of the job agrees on it without talking and two jobs on one node seldom share it.
    Returns what was set (empty when nothing was).
    """
    if "RANK" in os.environ or "SLURM_PROCID" not in os.environ:
        return {}
    from submitit.slurm.slurm import SlurmJobEnvironment  # SLURM's variables, parsed

    job = SlurmJobEnvironment()
    if job.num_tasks <= 1:
        return {}
    values = {
        "RANK": str(job.global_rank),
        "WORLD_SIZE": str(job.num_tasks),
        "LOCAL_RANK": str(job.local_rank),
        "LOCAL_WORLD_SIZE": str(job.num_tasks // job.num_nodes),
        "MASTER_ADDR": job.hostnames[0],  # SLURM_JOB_NODELIST, expanded (node[01-04])
        "MASTER_PORT": os.environ.get("MASTER_PORT") or str(job_port(job.job_id)),
    }
    os.environ.update(values)
    return values


def job_port(job_id: str) -> int:
    """A port in :data:`PORTS` that is a function of the job's id alone."""
    return PORTS.start + zlib.crc32(job_id.encode()) % len(PORTS)


__all__ = ["use_slurm_environment"]
