"""Checkpoints: written atomically, read safely, checked against the model they load into.

A checkpoint is a plain dict of tensors and Python primitives, so it loads with
``torch.load(path, weights_only=True)``. Writes go to a temporary file in the same
directory, are flushed to disk, then renamed over the target: a run killed at any instant
leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rcnnexp.errors import CheckpointError

FORMAT = "rcnnexp-checkpoint"
VERSION = 1


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)``, fsync, then rename onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, "version": VERSION, **state},
                                              tmp))


def copy_checkpoint(src: Path, dst: Path) -> None:
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load an rcnnexp checkpoint, or raise a :class:`CheckpointError` that says why not."""
    p = Path(path)
    if not p.is_file():
        what = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {p} {what} (expected a .pt file written by "
                              "`rcnnexp train`, e.g. <run dir>/checkpoints/last.pt)")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated zip, a pickle of something else, ...
        raise CheckpointError(f"checkpoint {p} is corrupt or not a checkpoint "
                              f"({unloadable_reason(p, err)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{p} is a PyTorch file but not an rcnnexp checkpoint "
                              "(it has no 'format': 'rcnnexp-checkpoint' entry)")
    return state


# what every file torch.save writes starts with: a zip archive, or (before PyTorch 1.6) a pickle
TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80\x02")


def unloadable_reason(path: Path, err: Exception) -> str:
    """Why ``torch.load`` failed, in words: a file that does not even start as one written by
    ``torch.save`` is named as such (the loader's own error is then a bare byte code)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head.startswith(TORCH_FILE_STARTS):
        return f"not a file written by torch.save: it starts with {head!r}"
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{type(err).__name__}: {reason[:200]}"


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain configs, as 'key: old -> new'."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{prefix}.{key}" if prefix else str(key)
            out += config_differences(old.get(key, "<absent>"), new.get(key, "<absent>"), sub)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def load_model_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor],
                     source: str) -> None:
    """``load_state_dict`` with a clear error when the checkpoint is of another model."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing[:5])}")
        if unexpected:
            problems.append(f"unexpected {', '.join(unexpected[:5])}")
        if mismatched:
            problems.append(f"other shapes for {', '.join(mismatched[:5])}")
        raise CheckpointError(f"{source} holds the weights of another model than the one "
                              f"configured ({'; '.join(problems)})")
    model.load_state_dict(state)
