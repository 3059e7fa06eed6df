"""One process per run directory: an exclusive lock held for as long as the run lives.

Two processes training into one directory would interleave train.log and overwrite each
other's checkpoints. The lock is ``fcntl.flock`` on ``<run dir>/.lock``: the kernel drops it
when the process ends in any way (``kill -9`` included), so a lock is never left stale; the
file only records the holder's pid, for the message that refuses a second process.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TextIO

from rcnnexp.errors import RunDirError, unwritable_reason

LOCK_NAME = ".lock"


def lock_run_dir(run_dir: Path, create: bool = True) -> TextIO | None:
    """Lock ``run_dir``, creating it first when ``create`` (else None if it does not exist);
    keep the returned file open while the run lives (closing it, or the process ending,
    releases the lock). Under ``torchrun`` only rank 0 locks: the other ranks of the same
    run share its directory."""
    if int(os.environ.get("RANK", 0)) != 0:
        return None
    try:
        if not create and not run_dir.is_dir():
            return None
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / LOCK_NAME, "a+")  # noqa: SIM115 (held for the run's life)
    except OSError as err:
        raise RunDirError(f"hydra.run.dir={run_dir}: cannot write a run directory there "
                          f"({unwritable_reason(run_dir, err)}); choose a folder you can write to"
                          ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunDirError(f"run directory {run_dir} is in use by another rcnnexp process "
                          f"(pid {holder}); wait for it to end, or choose another directory "
                          "(hydra.run.dir=...)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def lock_holder(run_dir: Path) -> str | None:
    """The pid of the process that holds ``run_dir``'s lock (trains there now), "unknown"
    where it recorded none, or None: no process holds it. It looks and writes nothing (the
    lock is taken for an instant, where free, to see that it is)."""
    try:
        handle = open(run_dir / LOCK_NAME)  # noqa: SIM115 (closed below); read-only: no file made
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


__all__ = ["LOCK_NAME", "lock_holder", "lock_run_dir"]
