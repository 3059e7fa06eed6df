"""Errors a user can fix.

Every exception here is printed by the CLI as one clear message, with no traceback and a
non-zero exit: it names what was wrong and what would be right. Anything else that escapes
is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a config value, a missing file, a checkpoint that does not fit."""

    exit_code = 2


class ConfigError(UserError):
    """A composed config that is well typed but invalid (a value out of range, ...)."""


class DataError(UserError):
    """A dataset that is missing, incomplete or corrupt on disk."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, or was written by another model."""


class RunDirError(UserError):
    """A run directory that cannot be written, or that another process is training in."""
