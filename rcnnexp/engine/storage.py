"""Writing a run's files: atomically, and with one clear error when the disk is full.

Every file a run writes (checkpoints, metrics.csv, results.json) goes to a temporary file in
the same directory, is flushed to disk, then renamed over the target: a run killed at any
instant leaves either the previous file or the new one, never half of one. A write that
fails removes its temporary file, so a full disk is not left fuller, and a full disk is
reported as a :class:`StorageError` naming the disk and the space the write needed.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from rcnnexp.errors import StorageError

# the errors that mean "no room": a full file system, or the user's quota on it
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class _RecordingFile:
    """A binary file that keeps the OSError its write raised.

    ``torch.save`` turns a failed write into a RuntimeError ("basic_ios::clear",
    "unexpected pos ...") without the errno that says the disk was full; this keeps it.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._fh.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self._fh.flush()


def atomic_write(path: Path, write: Callable[[BinaryIO], object], size: int) -> None:
    """Call ``write(file)`` on a temporary file, fsync it, then rename it onto ``path``.

    ``size`` is about how many bytes the file takes: what a full disk is said to need.
    On any failure the temporary file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    recorder: _RecordingFile | None = None
    try:
        with open(tmp, "wb") as fh:
            recorder = _RecordingFile(fh)
            write(recorder)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        cause = recorder.error if recorder is not None and recorder.error else err
        if isinstance(cause, OSError) and cause.errno in NO_SPACE:
            raise no_space_error(path, size) from None
        raise


def no_space_error(path: Path, size: int | None) -> StorageError:
    """The one line a full disk gets: which disk, how much it has, how much was needed
    (``size``, when the writer knows it). ``path`` is the file, or the directory of files
    (TensorBoard's), being written."""
    directory = existing_folder(path if path.is_dir() else path.parent)
    free = shutil.disk_usage(directory).free
    return StorageError(
        f"no space left on the disk mounted at {mount_point(directory)} to write {path} ("
        + (f"it needs about {human_bytes(size)}, " if size is not None else "")
        + f"{human_bytes(free)} free): free some space, then run the same command with "
        "trainer.resume=auto to continue (the checkpoints written before are intact)")


# what a run writes before its first checkpoint: Hydra's .hydra/*.yaml, train.log and the
# first TensorBoard events (tens of KB); less free space than this and it would fail there
ROOM_TO_START = 1 << 20


def check_room_to_start(run_dir: Path) -> None:
    """Refuse to start (or resume) a run on a disk without room for its first files: Hydra
    would write ``.hydra/config.yaml`` half and fail with a traceback, before any check of
    ours could say what is wrong."""
    usage = shutil.disk_usage(existing_folder(run_dir))
    # a file system of no size (/proc, /sys) is no disk: making the directory there fails,
    # and that check says so
    if usage.total and usage.free < ROOM_TO_START:
        raise no_space_error(run_dir / ".hydra" / "config.yaml", ROOM_TO_START)


def existing_folder(path: Path) -> Path:
    """``path`` or the nearest of its parents that exists: where a write there would land."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: Path) -> Path:
    """The mount point of the file system that holds ``path`` (an existing path)."""
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB'."""
    if n < 1024:
        return f"{n:.0f} B"
    units = iter(("KB", "MB", "GB"))
    unit = next(units)
    n /= 1024
    while n >= 1024 and unit != "GB":
        unit, n = next(units), n / 1024
    return f"{n:.1f} {unit}"


__all__ = ["NO_SPACE", "ROOM_TO_START", "atomic_write", "check_room_to_start", "human_bytes",
           "mount_point", "no_space_error"]
