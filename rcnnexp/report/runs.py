"""Finished runs on disk: what ``rcnnexp train`` wrote into each run directory.

A run is a directory with a ``results.json`` (a single run, or a job of a sweep, whose
sweep folder holds Hydra's ``multirun.yaml``). A run of two stages (``trainer.retrain``)
is one run: its ``results.json`` reports the retrained model and its ``tune/`` folder the
first stage, whose curves the report also draws.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rcnnexp.engine.hparams import BOOKKEEPING
from rcnnexp.errors import UserError
from rcnnexp.report.interval import OFFICIAL_TEST_IMAGES
from rcnnexp.sweep import job_number

# command-line keys that do not change a run's protocol or result: the run's bookkeeping
# (where and how it runs and is stored, resuming included; the kernels it runs in and the
# cluster it ran on), what names it, and the seed, which the report shows in a column of its
# own. The arithmetic (trainer.precision, trainer.tf32) is judged by what the run trained in
# (rcnnexp/report/protocol.py: arithmetic), not by the command line: a GPU run told
# trainer.precision=fp32 trainer.tf32=false trains as the papers did
DESCRIPTIVE = frozenset({*BOOKKEEPING, "experiment", "table", "name", "trainer.seed",
                         "trainer.device", "trainer.eval_batch_size", "trainer.compile",
                         "trainer.channels_last", "cluster", "trainer.precision",
                         "trainer.tf32"})


@dataclass
class Run:
    directory: Path
    results: dict[str, Any]
    history: list[dict[str, float]]  # metrics.csv: one row per epoch
    tune_history: list[dict[str, float]]  # tune/metrics.csv of a two-stage run, else []
    sweep: Path | None  # the sweep folder this run is a job of

    @property
    def paper(self) -> dict[str, Any] | None:
        return self.results.get("paper")

    def overrides(self) -> dict[str, str]:
        """The command line's ``key=value`` overrides (later ones win), keys without +/~."""
        out = {}
        for item in self.results.get("overrides", []):
            key, sep, value = str(item).partition("=")
            if sep:
                out[key.lstrip("+~")] = value
        return out

    def changes(self) -> list[str]:
        """The overrides that change what was run: the command line less Hydra's own keys,
        the preset or table it names, the seed (a column of its own) and the keys that
        only say where or how verbosely to run (DESCRIPTIVE)."""
        return [f"{k}={v}" for k, v in self.overrides().items()
                if not k.startswith("hydra.") and k not in DESCRIPTIVE]

    @property
    def test_images(self) -> int | None:
        """How many test images its metrics are over: results.json's ``test_images``, or for
        a run written before it was recorded, the official test set's size of its dataset
        (a run of the full dataset evaluates it whole); None where neither is known."""
        recorded = self.results.get("test_images")
        if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded > 0:
            return recorded
        if "test_images" in self.results:  # recorded as none: the run had no test split
            return None
        return OFFICIAL_TEST_IMAGES.get(str(self.results.get("dataset")))

    @functools.cached_property
    def stored_config(self) -> dict[str, Any] | str:
        """The config the run ran with (``.hydra/config.yaml``, interpolations unresolved, as
        Hydra wrote it), or why it cannot be read; read once, for the † and the searches."""
        path = self.directory / ".hydra" / "config.yaml"
        if not path.is_file():
            return f"no {path.relative_to(self.directory)}"
        try:
            plain = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        except Exception as err:  # a damaged file: named as the reason, never a crash
            return f"{path.relative_to(self.directory)} unreadable ({type(err).__name__})"
        return plain if isinstance(plain, dict) else f"{path} holds no mapping"

    @property
    def optimized_metric(self) -> str | None:
        """The ``optimized_metric`` the run was composed with (its stored config): set, the
        run is a search's trial (conf/search), shortened and never tested."""
        stored = self.stored_config
        value = stored.get("optimized_metric") if isinstance(stored, dict) else None
        return None if value is None else str(value)

    @property
    def search_trial(self) -> bool:
        return self.optimized_metric is not None

    @property
    def counts_for_its_row(self) -> bool:
        """Neither a check run nor a search's trial: a run whose test number is a result."""
        return not self.check_run and not self.search_trial

    @property
    def check_run(self) -> bool:
        """A check run (``trainer.limit_batches``): a few batches of training and evaluation,
        listed but never counted as a paper row's result."""
        return self.results.get("limit_batches") is not None

    def metric(self, name: str) -> float | None:
        value = self.results.get(name)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def job_order(directory: Path) -> tuple[int, str]:
    """A sweep's jobs in the order Hydra numbered them (3 before 10), other folders last by
    name."""
    number = job_number(directory)
    return (1 << 30, directory.name) if number is None else (number, directory.name)


def read_history(path: Path) -> list[dict[str, float]]:
    """metrics.csv as numbers (empty cells left out); [] when there is none."""
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        rows = []
        for row in csv.DictReader(fh):
            parsed = {}
            for key, value in row.items():
                try:
                    parsed[key] = float(value)
                except (TypeError, ValueError):
                    continue
            rows.append(parsed)
    return rows


# hydra-optuna-sweeper's record of a search's best trial, in its folder when the search ends
OPTUNA_RESULTS = "optimization_results.yaml"
# what a sweep folder holds: Hydra's basic sweeper's record of the sweep, or (a search, with
# Hydra's Optuna sweeper) the best trial, written when the search ends
SWEEP_MARKERS = ("multirun.yaml", OPTUNA_RESULTS)


class NotARun(Exception):
    """A ``results.json`` that is damaged or that ``rcnnexp train`` did not write: the reason,
    which the report names when it skips the folder (a run left out without a word would
    silently change a table's n and mean)."""


# keys every results.json that `rcnnexp train` writes has, and the report reads
RUN_KEYS = ("dataset", "overrides")


def load_run(directory: Path) -> Run | None:
    """The run in ``directory``; None for stage 1 of a two-stage run, which belongs to the
    run around it. Raises :class:`NotARun` for a results.json that is not a run's."""
    try:
        results = json.loads((directory / "results.json").read_text())
    except OSError as err:
        raise NotARun(f"its results.json cannot be read ({err.strerror or err})") from None
    except ValueError as err:  # invalid JSON, or bytes that are not UTF-8
        raise NotARun(f"its results.json is not valid JSON ({err})") from None
    if not isinstance(results, dict):
        raise NotARun(f"its results.json holds a JSON {type(results).__name__}, not the "
                      "object rcnnexp train writes")
    missing = [key for key in RUN_KEYS if key not in results]
    if missing:
        raise NotARun(f"its results.json has no {' or '.join(repr(k) for k in missing)}: it "
                      "was not written by rcnnexp train")
    if results.get("stage") == "tune":
        return None
    sweep = (directory.parent if any((directory.parent / marker).is_file()
                                     for marker in SWEEP_MARKERS) else None)
    return Run(directory, results, read_history(directory / "metrics.csv"),
               read_history(directory / "tune" / "metrics.csv"), sweep)


def find_runs(paths: list[Path], warn: Callable[[str], None] | None = None) -> list[Run]:
    """Every run under ``paths`` (run directories, sweep folders or any folder above them),
    each once, in path order; ``warn`` is told of each folder skipped for a results.json that
    is not a run's, and why."""
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise UserError(f"no such directory: {', '.join(missing)} (give run or sweep "
                        "directories, e.g. outputs/multirun/DATE/TIME)")
    seen: dict[Path, Run | None] = {}
    for root in paths:
        for found in sorted(root.rglob("results.json")):
            directory = found.parent.resolve()
            if directory in seen:
                continue
            try:
                seen[directory] = load_run(found.parent)
            except NotARun as err:
                seen[directory] = None
                if warn is not None:
                    warn(f"skipped {found.parent}: {err}")
    return [run for run in seen.values() if run is not None]


__all__ = ["OPTUNA_RESULTS", "NotARun", "Run", "find_runs", "job_order",
           "load_run", "read_history"]
