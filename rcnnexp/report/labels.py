"""What tells runs apart, for a figure's legend: the values that differ between them
(``K=32, seed=1``), not their folders (``23-45-18/0 (seed 0)``).

The keys are those the runs' command lines set (a sweep's swept keys, a table's presets,
the seed), Hydra's own, the bookkeeping ones (where a run's files go, resuming, progress,
workers) and those that only say how a run was launched (``table``, ``cluster``) aside. A
run that leaves such a key at its default takes its value from the config it ran with
(:attr:`Run.stored_config`), so ``K=32`` stands beside another run's ``K=64`` even where
only the second set it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rcnnexp.engine.hparams import BOOKKEEPING, short_names
from rcnnexp.report.runs import Run

MAX_KEYS = 4  # more keys than this differ: the runs are told apart by their folders instead
UNSET = "—"  # a group (``experiment``) a run did not choose on its command line
LAUNCH = ("table", "cluster")  # how a run was launched (a table's sweep, SLURM), not what ran


def differing_keys(runs: Sequence[Run]) -> list[str]:
    """The command-line keys whose values differ between ``runs``, in the order the runs'
    command lines name them."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.overrides() if k not in keys and _tells_apart(k)]
    return [k for k in keys if len({_compared(r, k) for r in runs}) > 1]


def run_labels(runs: Sequence[Run]) -> list[str]:
    """One legend label per run, unique among them: the values of :func:`differing_keys`
    (each key by its shortest ending no other key shares, ``model.K`` as ``K``);
    where no key differs or too many do, what the run is (its preset and seed, or folder)."""
    keys = differing_keys(runs)
    if not keys or len(keys) > MAX_KEYS:
        labels = [_identity(r) for r in runs]
    else:
        names = short_names(keys)
        labels = [", ".join(f"{names[k]}={value(r, k)}" for k in keys) for r in runs]
    return [f"{label} ({_folder(run)})" if labels.count(label) > 1 else label
            for label, run in zip(labels, runs, strict=True)]


def value(run: Run, key: str) -> str:
    """``key``'s value in ``run`` as the reader set it: its command line's, else the value
    it ran with (its stored config), else UNSET."""
    overrides = run.overrides()
    if key in overrides:
        return overrides[key]
    stored = _stored(run, key)
    return UNSET if stored is None or isinstance(stored, dict) else _text(stored)


def _compared(run: Run, key: str) -> str:
    """The value compared between runs: the stored config's where it holds the key as a
    value (one spelling for ``1e-3`` and ``0.001``), else the command line's."""
    stored = _stored(run, key)
    if stored is not None and not isinstance(stored, dict):
        return _text(stored)
    return run.overrides().get(key, UNSET)


def _stored(run: Run, key: str) -> Any:
    node: Any = run.stored_config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _text(stored: Any) -> str:
    if isinstance(stored, list):
        return "[" + ",".join(_text(v) for v in stored) + "]"
    return str(stored)


def _tells_apart(key: str) -> bool:
    """Not Hydra's own keys, bookkeeping or how a run was launched: they differ between
    runs without what the runs computed differing (another run directory, progress bars,
    ``table=rcnn/t4`` beside the same preset run alone)."""
    return not key.startswith("hydra.") and not any(
        key == k or key.startswith(f"{k}.") for k in (*BOOKKEEPING, *LAUNCH))


def _identity(run: Run) -> str:
    """What a run is when no value tells it apart: its preset (or folder) and seed."""
    seed = run.results.get("seed")
    name = str(run.results.get("experiment") or _folder(run))
    return name if seed is None else f"{name}, seed={seed}"


def _folder(run: Run) -> str:
    return (run.directory.name if run.sweep is None
            else f"{run.sweep.name}/{run.directory.name}")


__all__ = ["differing_keys", "run_labels", "value"]
