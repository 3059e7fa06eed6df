"""A search's part of the report (``rcnnexp train -m search=...``, conf/search): every trial's
values against the number its sweeper maximised, the best trial, and figures.

A search is a sweep whose jobs returned one number to an Optuna sweeper (the config's
``optimized_metric``, a validation metric). The sweeper writes the best trial to
``<sweep dir>/optimization_results.yaml`` when it ends; a search still running (or stopped)
has no such file, and its best trial is then taken from the trials' own results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from rcnnexp.report.aggregate import Sweep
from rcnnexp.report.runs import Run

RESULTS_FILE = "optimization_results.yaml"  # hydra-optuna-sweeper's, in the sweep folder


@dataclass
class Search:
    sweep: Sweep
    metric: str  # the results.json key the sweeper maximised
    sweeper_best: dict[str, Any] | None  # the sweeper's best_params and best_value, when ended

    def ranked(self) -> list[Run]:
        """The trials, best first; those without the metric (failed, stopped) last."""
        return sorted(self.sweep.runs, key=lambda r: (r.metric(self.metric) is None,
                                                      -(r.metric(self.metric) or 0.0)))

    @property
    def best(self) -> Run | None:
        ranked = self.ranked()
        return ranked[0] if ranked and ranked[0].metric(self.metric) is not None else None


def find_searches(sweeps: list[Sweep]) -> list[Search]:
    """The sweeps that are searches: their jobs were composed with an ``optimized_metric``."""
    searches = []
    for sweep in sweeps:
        metrics = {m for run in sweep.runs if (m := run.optimized_metric) is not None}
        if len(metrics) != 1:
            continue
        best = None
        results = sweep.directory / RESULTS_FILE
        if results.is_file():
            loaded = OmegaConf.to_container(OmegaConf.load(results))
            best = loaded if isinstance(loaded, dict) else None
        searches.append(Search(sweep, metrics.pop(), best))
    return searches


__all__ = ["RESULTS_FILE", "Search", "find_searches"]
