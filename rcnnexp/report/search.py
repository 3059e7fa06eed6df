"""A search's part of the report (``rcnnexp train -m search=...``, conf/search): every trial's
values against the number its sweeper maximised, the best trial, and figures.

A search is a sweep whose jobs returned one number to an Optuna sweeper (the config's
``optimized_metric``, a validation metric). The sweeper writes its best trial to
``<sweep dir>/optimization_results.yaml`` when it ends, so that file says whether the search
ended; the best trial shown is taken from the trials' own results either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcnnexp.report.aggregate import Sweep
from rcnnexp.report.runs import OPTUNA_RESULTS, Run


@dataclass
class Search:
    sweep: Sweep
    metric: str  # the results.json key the sweeper maximised
    ended: bool  # the sweeper recorded its best trial (OPTUNA_RESULTS)

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
        searches.append(Search(sweep, metrics.pop(), (sweep.directory / OPTUNA_RESULTS).is_file()))
    return searches


__all__ = ["Search", "find_searches"]
