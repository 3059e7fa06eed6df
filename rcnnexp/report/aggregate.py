"""From runs to what a paper's table reports: ours as mean ± std over runs beside the paper's
number, with a 95 % interval and the verdict it gives (rcnnexp/report/interval.py); and, for
any sweep, which keys it swept.

A table row's number is matched by the paper, table and row a run's results.json names
(its experiment preset) and by the run's dataset; every run that matches is one value
(seeds, SUN397's partitions, ...), so ``n`` counts them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from rcnnexp.report.catalogue import PaperNumber, PaperRow, PaperTable
from rcnnexp.report.interval import Interval, interval, verdict
from rcnnexp.report.runs import Run, job_order


@dataclass
class RowResult:
    """One number of a paper's table row (a dataset and a metric), and ours."""

    table: PaperTable
    row: PaperRow
    number: PaperNumber
    runs: list[Run] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        return [v for r in self.runs if (v := r.metric(self.number.metric)) is not None]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """The sample standard deviation over runs (None for fewer than two)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def difference(self) -> float | None:
        return None if self.mean is None else self.mean - self.number.value

    @property
    def test_images(self) -> int | None:
        """The test-set size its runs were scored on: the smallest where runs differ (the
        widest interval), None where any run's is unknown."""
        sizes = [r.test_images for r in self.runs if r.metric(self.number.metric) is not None]
        return None if not sizes or None in sizes else min(s for s in sizes if s is not None)

    @property
    def interval(self) -> Interval | None:
        """Our mean's 95 % interval: the test set's binomial error and the seeds' spread."""
        return interval(self.values, self.test_images)

    @property
    def verdict(self) -> str:
        return verdict(self.number.value, self.interval, self.number.metric, ran=bool(self.n))


def match_rows(tables: list[PaperTable], runs: list[Run]) -> list[RowResult]:
    """Every number of every table, with the runs that reproduce it (maybe none)."""
    results = [RowResult(t, r, n) for t in tables for r in t.rows for n in r.numbers]
    index = {(x.row.paper, x.row.table, x.row.row, x.number.dataset): [] for x in results}
    for x in results:
        index[(x.row.paper, x.row.table, x.row.row, x.number.dataset)].append(x)
    for run in runs:
        p = run.paper
        if not p or not run.counts_for_its_row:  # a check run, a search's trial
            continue
        for x in index.get((p["paper"], p["table"], p["row"], run.results.get("dataset")), []):
            x.runs.append(run)
    return results


def unmatched_paper_runs(rows: list[RowResult], runs: list[Run]) -> list[Run]:
    """Runs of a paper row that no table lists (a renamed row, a dataset it has no number
    for): reported on their own rather than dropped."""
    matched = {id(r) for x in rows for r in x.runs}
    return [r for r in runs if r.paper and r.counts_for_its_row and id(r) not in matched]


def is_seed(key: str) -> bool:
    """A key whose values repeat a setting rather than change it (``trainer.seed``,
    ``dataset.split_seed``): jobs that differ in these alone are pooled into mean ± std."""
    return key.endswith("seed")


@dataclass
class Sweep:
    directory: Path
    runs: list[Run]  # in job order
    keys: list[str]  # the overrides whose values differ between its jobs

    def value(self, run: Run, key: str) -> str:
        return run.overrides().get(key, "")

    @property
    def setting_keys(self) -> list[str]:
        """The swept keys that change what a job runs: all but the seeds."""
        return [k for k in self.keys if not is_seed(k)]

    def setting(self, run: Run) -> tuple[str, ...]:
        """The job's values of :attr:`setting_keys`: jobs with the same setting differ in
        their seed alone."""
        return tuple(self.value(run, k) for k in self.setting_keys)

    def settings(self) -> dict[tuple[str, ...], list[Run]]:
        """The jobs by setting, in job order: the only groups a mean ± std may pool (a mean
        over different models or rates would describe none of them)."""
        out: dict[tuple[str, ...], list[Run]] = {}
        for run in self.runs:
            out.setdefault(self.setting(run), []).append(run)
        return out

    def numeric(self, key: str) -> bool:
        """Whether every job's value of ``key`` is a number (drawn on a numeric axis)."""
        try:
            [float(self.value(r, key)) for r in self.runs]
        except ValueError:
            return False
        return True


def find_sweeps(runs: list[Run]) -> list[Sweep]:
    """The sweeps among ``runs`` (jobs of one ``-m``), each with the keys it swept."""
    by_dir: dict[Path, list[Run]] = {}
    for run in runs:
        if run.sweep is not None:
            by_dir.setdefault(run.sweep, []).append(run)
    sweeps = []
    for directory, members in by_dir.items():
        keys: list[str] = []
        for run in members:
            keys += [k for k in run.overrides() if k not in keys]
        swept = [k for k in keys
                 if len({r.overrides().get(k, "") for r in members}) > 1]
        members.sort(key=lambda r: job_order(r.directory))
        sweeps.append(Sweep(directory, members, swept))
    return sweeps


__all__ = ["RowResult", "Sweep", "find_sweeps", "is_seed", "match_rows",
           "unmatched_paper_runs"]
