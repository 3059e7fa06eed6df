"""The report's figures (PNG, matplotlib without a display): a table's rows, paper against
ours; RecNets' size against accuracy; training curves; a metric against a swept key."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from rcnnexp.report.aggregate import RowResult, Sweep
from rcnnexp.report.runs import Run
from rcnnexp.report.search import Search

METRIC_LABELS = {"test_error": "test error (%)", "test_top5_error": "top-5 test error (%)",
                 "test_top1": "test accuracy (%)", "test_top5": "top-5 test accuracy (%)",
                 "best_val_top1": "best validation accuracy (%)"}
DPI = 110


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def half_width(r: RowResult) -> float:
    """The error bar of a row: its 95 % interval's half-width; 0 where the test-set size is
    unknown (the point alone, rather than a bar that would mean something else)."""
    return 0.0 if r.interval is None else r.interval.half_width


def table_figure(rows: Sequence[RowResult], title: str, path: Path) -> Path:
    """Each row of a table: the paper's number (x) and ours (mean, its 95 % interval as
    bars: the test set's sampling error and the seeds' spread), one panel per dataset and
    metric the table reports."""
    panels: dict[tuple[str, str], list[RowResult]] = {}
    for r in rows:
        panels.setdefault((r.number.dataset, r.number.metric), []).append(r)
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(max(4.5, 0.55 * max(len(v) for v in panels.values()) + 2)
                                      * len(panels), 4.2))
    for ax, ((dataset, metric), items) in zip(axes[0], panels.items(), strict=True):
        xs = range(len(items))
        ax.scatter(xs, [r.number.value for r in items], marker="x", color="black", s=50,
                   label="paper", zorder=3)
        ran = [(x, r) for x, r in zip(xs, items, strict=True) if r.mean is not None]
        if ran:
            ax.errorbar([x for x, _ in ran], [r.mean for _, r in ran],
                        yerr=[half_width(r) for _, r in ran], fmt="o", color="tab:blue",
                        capsize=4, label="ours (mean, 95 % interval)", zorder=2)
        ax.set_xticks(list(xs), [r.row.row for r in items], rotation=35, ha="right",
                      fontsize=8)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_title(f"{dataset}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def size_figure(rows: Sequence[RowResult], path: Path) -> Path:
    """RecNets' size-accuracy comparison: test error against parameters, the paper's rows
    (their printed counts) and ours (our models' counts), one panel per dataset."""
    datasets = sorted({r.number.dataset for r in rows})
    fig, axes = plt.subplots(1, len(datasets), squeeze=False, figsize=(5.5 * len(datasets), 4.4))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        items = [r for r in rows if r.number.dataset == dataset and r.row.params]
        ax.scatter([r.row.params for r in items], [100 - r.number.value for r in items],
                   marker="x", color="black", label="paper")
        for r in items:
            ax.annotate(r.row.row.replace("RecNet", ""), (r.row.params, 100 - r.number.value),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
        ours = [r for r in rows if r.number.dataset == dataset and r.mean is not None]
        if ours:
            ax.errorbar([statistics.fmean(x.results["params"] for x in r.runs) for r in ours],
                        [100 - r.mean for r in ours], yerr=[half_width(r) for r in ours],
                        fmt="o", color="tab:blue", capsize=3, label="ours (mean, 95 % interval)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on a log axis
        ax.set_xlabel("parameters")
        ax.set_ylabel("test error (%)")
        ax.set_title(dataset, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("RecNets Tables 3-4: size against error", fontsize=11)
    return _save(fig, path)


def curve(run: Run) -> tuple[list[float], list[float], str]:
    """(epochs, error %, what it is) of a run's validation error, tuning stage included;
    test error where a run has no validation split."""
    for history, label in ((run.tune_history, "validation error (tuning stage)"),
                           (run.history, "validation error")):
        points = [(r["epoch"], 100 - r["val_top1"]) for r in history if "val_top1" in r]
        if points:
            return [e for e, _ in points], [v for _, v in points], label
    points = [(r["epoch"], 100 - r["test_top1"]) for r in run.history if "test_top1" in r]
    return [e for e, _ in points], [v for _, v in points], "test error (no validation split)"


def curves_figure(runs: Sequence[Run], labels: Sequence[str], title: str, path: Path) -> Path:
    """Validation error per epoch of every run (test error, dashed, where there is none)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for run, label in zip(runs, labels, strict=True):
        epochs, errors, kind = curve(run)
        ax.plot(epochs, errors, "-" if kind.startswith("validation") else "--", marker=".",
                label=label if len(runs) <= 16 else None)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("error (%): validation, or test (dashed)")
    errors = [y for line in ax.get_lines() for y in line.get_ydata()]
    # labels at 1, 2 and 5 of every decade: a run's errors often span less than one
    ticks = [m * 10.0**e for e in range(-3, 3) for m in (1, 2, 5)]
    if any(y <= 0 for y in errors):
        # log scale, but linear below the smallest error drawn, so that an epoch at 0 %
        # error (every validation image right) stays on the chart
        linthresh = min((y for y in errors if y > 0), default=1.0)
        ax.set_yscale("symlog", linthresh=linthresh, linscale=0.3)
        ax.set_ylim(bottom=0)
        ticks = [0.0, *(t for t in ticks if t >= linthresh)]
    else:
        ax.set_yscale("log")
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3, which="both")
    if len(runs) <= 16:
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def sweep_figure(sweep: Sweep, key: str, metric: str, path: Path) -> Path:
    """A metric against one numeric swept key: every job, and the mean ± std per value."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    points = [(float(sweep.value(r, key)), r.metric(metric)) for r in sweep.runs]
    points = [(x, y) for x, y in points if y is not None]
    ax.scatter([x for x, _ in points], [y for _, y in points], color="tab:gray", s=14,
               label="jobs")
    xs = sorted({x for x, _ in points})
    groups = [[y for x, y in points if x == v] for v in xs]
    if len(xs) < len(points):  # values shared by several jobs (not a search's sampled rates)
        ax.errorbar(xs, [statistics.fmean(g) for g in groups],
                    yerr=[statistics.stdev(g) if len(g) > 1 else 0.0 for g in groups],
                    fmt="o-", color="tab:blue", capsize=4, label="mean ± std")
    if xs and xs[0] > 0 and xs[-1] / xs[0] >= 100:  # a rate or decay searched on a log scale
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{sweep.directory.name}: {metric} against {key}", fontsize=10)
    return _save(fig, path)


def search_figure(search: Search, path: Path) -> Path:
    """A search's trials in the order they ran, each one's metric and the best so far."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    points = sorted((_trial_number(r), r.metric(search.metric)) for r in search.sweep.runs)
    points = [(n, y) for n, y in points if y is not None]
    ax.scatter([n for n, _ in points], [y for _, y in points], color="tab:gray", s=14,
               label="trials")
    best: list[float] = []
    for _, y in points:
        best.append(max(y, best[-1]) if best else y)
    ax.step([n for n, _ in points], best, where="post", color="tab:blue", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(METRIC_LABELS.get(search.metric, search.metric))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{search.sweep.directory.name}: {search.metric} by trial", fontsize=10)
    return _save(fig, path)


def _trial_number(run: Run) -> int:
    name = run.directory.name
    return int(name) if name.isdigit() else 1 << 30


__all__ = ["curve", "curves_figure", "half_width", "search_figure", "size_figure",
           "sweep_figure", "table_figure"]
