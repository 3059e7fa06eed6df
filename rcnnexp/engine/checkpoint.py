"""Checkpoints: written atomically, verified when read, checked against the model they load into.

A checkpoint is a plain dict of tensors and Python primitives, so it loads with
``torch.load(path, weights_only=True)``. It is written by :func:`atomic_write` (never half
a file, even on a full disk). PyTorch stores it as a zip archive with a CRC-32 for every
entry but does not check them when loading; :func:`load_checkpoint` does, so a damaged
file is refused rather than trained on or evaluated.
"""

from __future__ import annotations

import copy
import os
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from rcnnexp.engine.storage import atomic_write
from rcnnexp.errors import CheckpointError

FORMAT = "rcnnexp-checkpoint"
VERSION = 1
# what every checkpoint `rcnnexp train` writes holds; evaluating one needs only the first two
TRAINING_KEYS = ("model", "state", "optimizer", "schedule", "scaler", "rng")
MODEL_KEYS = TRAINING_KEYS[:2]
# the checkpoints of a run directory, which can stand in for each other
RUN_CHECKPOINTS = ("last.pt", "best.pt")


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    atomic_write(path, lambda fh: torch.save({"format": FORMAT, "version": VERSION, **state},
                                             fh),
                 size=tensor_bytes(state) + 16 * 1024)


def copy_checkpoint(src: Path, dst: Path) -> None:
    def copy(fh: Any) -> None:
        with open(src, "rb") as source:
            shutil.copyfileobj(source, fh)

    atomic_write(dst, copy, size=src.stat().st_size)


def tensor_bytes(tree: Any) -> int:
    """The bytes of all tensors in a nested dict/list and of their zip entries (about 200
    each): with the pickle of the rest, what saving them takes."""
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size() + 200
    if isinstance(tree, Mapping):
        return sum(tensor_bytes(v) for v in tree.values())
    if isinstance(tree, list | tuple):
        return sum(tensor_bytes(v) for v in tree)
    return 0


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu",
                    needs: Sequence[str] = MODEL_KEYS) -> dict[str, Any]:
    """Load an rcnnexp checkpoint that holds ``needs``, or raise a :class:`CheckpointError`
    that says why not and, for a run's last.pt or best.pt, whether the other one is usable."""
    p = Path(path)
    if not p.is_file():
        what = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {p} {what} (expected a .pt file written by "
                              "`rcnnexp train`, e.g. <run dir>/checkpoints/last.pt)")
    try:
        return read_checkpoint(p, map_location, needs)
    except CheckpointError as err:
        other = alternative(p, needs)
        raise CheckpointError(f"{err}{'; ' + other if other else ''}") from None


def read_checkpoint(p: Path, map_location: Any, needs: Sequence[str]) -> dict[str, Any]:
    """:func:`load_checkpoint` without the search for an alternative."""
    verify_archive(p)
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated zip, a pickle of something else, ...
        raise CheckpointError(f"checkpoint {p} is corrupt or not a checkpoint "
                              f"({unloadable_reason(p, err)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{p} is a PyTorch file but not an rcnnexp checkpoint "
                              "(it has no 'format': 'rcnnexp-checkpoint' entry)")
    missing = [k for k in needs if not isinstance(state.get(k), dict)]
    if missing:
        raise CheckpointError(f"checkpoint {p} is incomplete: it has no {', '.join(missing)} "
                              "(a checkpoint of `rcnnexp train` holds "
                              f"{', '.join(TRAINING_KEYS)})")
    return state


def checkpoint_epoch(path: Path) -> int | None:
    """The completed epochs of the checkpoint at ``path``; None if it is missing or unusable."""
    if not path.is_file():
        return None
    try:
        return int(read_checkpoint(path, "cpu", MODEL_KEYS)["state"]["epoch"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


def verify_archive(p: Path) -> None:
    """Check every entry of the zip archive ``torch.save`` wrote against its CRC-32."""
    try:
        with zipfile.ZipFile(p) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise CheckpointError(f"checkpoint {p} is corrupt or not a checkpoint "
                              f"({unloadable_reason(p, err)})") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {p} is corrupt: its entry {bad} fails its CRC "
                              "check (the file was damaged after it was written)")


def alternative(p: Path, needs: Sequence[str]) -> str:
    """For a run's last.pt or best.pt that cannot be used: whether the other one can, and how
    ("" for a checkpoint outside a run's checkpoints/)."""
    if p.name not in RUN_CHECKPOINTS:
        return ""
    for name in RUN_CHECKPOINTS:
        other = p.with_name(name)
        if other == p or not other.is_file():
            continue
        try:
            state = read_checkpoint(other, "cpu", needs)
        except CheckpointError:
            return f"{other} is not usable either"
        return (f"{other} (epoch {state['state'].get('epoch')}) is intact: use it instead "
                f"(trainer.resume={other} continues training from it, eval "
                f"checkpoint={other} evaluates it)")
    return (f"there is no other checkpoint in {p.parent}; to train the run over, move {p} "
            "away and run again with trainer.resume=auto")


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
    """``load_state_dict`` with a clear error when the checkpoint is of another model.

    A state dict saved from a ``torch.compile``d module (keys prefixed ``_orig_mod.``) loads
    as the plain model's: rcnnexp saves the plain model, other code may not. Which keys are
    missing or unexpected is what ``load_state_dict`` itself finds, after the modules have
    read their own older layouts (such as a CRC's per-step BatchNorms stored as one); a
    refused checkpoint may have been partly loaded, and the caller stops.
    """
    state = copy.copy(state)  # (keeping its _metadata: the modules' state versions)
    consume_prefix_in_state_dict_if_present(state, "_orig_mod.")
    own = model.state_dict()
    mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
    if mismatched:
        raise another_model(source, [k for k in own if k not in state],
                            [k for k in state if k not in own], mismatched)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that differ once a module read an older layout
        raise another_model(source, [], [], [str(err).strip().splitlines()[-1].strip()]
                            ) from None
    if result.missing_keys or result.unexpected_keys:
        raise another_model(source, result.missing_keys, result.unexpected_keys, [])


def another_model(source: str, missing: Sequence[str], unexpected: Sequence[str],
                  mismatched: Sequence[str]) -> CheckpointError:
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:5])}")
    if mismatched:
        problems.append(f"other shapes for {', '.join(mismatched[:5])}")
    return CheckpointError(f"{source} holds the weights of another model than the one "
                           f"configured ({'; '.join(problems)})")
