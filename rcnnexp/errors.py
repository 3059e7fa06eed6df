"""Errors a user can fix.

Every exception here is printed by the CLI as one clear message, with no traceback and a
non-zero exit: it names what was wrong and what would be right. Anything else that escapes
is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class Terminated(BaseException):
    """SIGTERM outside training (which the engine handles itself), raised like Ctrl-C's
    KeyboardInterrupt so that it ends the command in one line, not a silent exit -15."""


class UserError(Exception):
    """Bad input: a config value, a missing file, a checkpoint that does not fit."""

    exit_code = 2


class ConfigError(UserError):
    """A composed config that is well typed but invalid (a value out of range, ...)."""


class DataError(UserError):
    """A dataset that is missing, incomplete or corrupt on disk."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, or was written by another model."""


class StorageError(UserError):
    """A write that failed for want of space: the run stops, what it wrote before is intact.

    Exit 1, not 2: the input was fine, the machine was not."""

    exit_code = 1


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite: the run stops before saving that state.

    Exit 1: the config was valid, but training with it failed (often too high a learning
    rate)."""

    exit_code = 1


class RunDirError(UserError):
    """A run directory that cannot be written, or that another process is training in."""


def unwritable_reason(path: Path, err: OSError) -> str:
    """Why ``path`` could not be created, in words: a file where a folder must be is named
    (the OS says only "File exists" or "Not a directory")."""
    blocking = next((p for p in (path, *path.parents) if _is_file(p)), None)
    if blocking is not None:
        return f"{'it' if blocking == path else blocking} is a file, not a folder"
    return err.strerror or str(err)


def _is_file(path: Path) -> bool:
    try:
        return path.exists() and not path.is_dir()
    except OSError:  # a name too long, a folder that may not be searched: not a file there
        return False
