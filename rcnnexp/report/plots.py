"""The report's figures (matplotlib without a display): a table's rows, paper against ours;
RecNets' size against accuracy; training curves; a metric against a swept key; a search's
trials.

Each ``*_figure`` function returns the Figure, laid out, so that what it draws can be read
back (its Axes: ticks, lines, bars, legend); :func:`save` writes it as a PNG and frees it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from rcnnexp.report import axes
from rcnnexp.report.aggregate import RowResult, Sweep
from rcnnexp.report.history import Curves, curves
from rcnnexp.report.interval import lower_is_better
from rcnnexp.report.runs import Run, job_order
from rcnnexp.report.search import Search

METRIC_LABELS = {"test_error": "test error (%)", "test_top5_error": "top-5 test error (%)",
                 "test_top1": "test accuracy (%)", "test_top5": "top-5 test accuracy (%)",
                 "best_val_top1": "best validation accuracy (%)"}
DPI = 110
DAGGER = "†"
DEPARTS = f"{DAGGER} departs from its row's protocol (the runs under the table say how)"
LEGEND_RUNS = 16  # more curves than this: no legend (it would cover the chart)
MAX_SERIES = 8  # a sweep figure draws a line per setting of its other keys up to this many


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` (PNG) and free it."""
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _laid_out(fig: Figure) -> Figure:
    fig.tight_layout()
    return fig


# -- a table: the paper's numbers and ours ------------------------------------------------------
def half_width(r: RowResult) -> float | None:
    """The error bar of a row: its 95 % interval's half-width; None where the test-set size
    is unknown (the point alone, rather than a bar that would mean something else)."""
    return None if r.interval is None else r.interval.half_width


def table_figure(rows: Sequence[RowResult], title: str, departs: Sequence[bool]) -> Figure:
    """Each row of a table: the paper's number (x) and ours (a hollow circle at the mean,
    its 95 % interval as a bar through it, and the interval's half-width written beside it:
    the test set's sampling error and the seeds' spread), one panel per dataset and metric
    the table reports. A row whose runs depart from its protocol (``departs``, the table's
    †) carries the † in its label. An error axis spanning a decade or more is logarithmic,
    so that a small error's bar is not flattened by a large one's."""
    panels: dict[tuple[str, str], list[tuple[RowResult, bool]]] = {}
    for r, marked in zip(rows, departs, strict=True):
        panels.setdefault((r.number.dataset, r.number.metric), []).append((r, marked))
    # constrained: the legend goes under the panels, where it covers no bar
    fig, grid = plt.subplots(1, len(panels), squeeze=False, layout="constrained",
                             figsize=(max(4.5, 0.6 * max(len(v) for v in panels.values()) + 2)
                                      * len(panels), 4.8))
    for ax, ((dataset, metric), items) in zip(grid[0], panels.items(), strict=True):
        _table_panel(ax, [r for r, _ in items], metric)
        ax.set_xticks(range(len(items)),
                      [r.row.row + (DAGGER if marked else "") for r, marked in items],
                      rotation=35, ha="right", fontsize=8)
        ax.set_title(dataset, fontsize=10)
    entries: dict[str, Artist] = {}  # every panel's, once (one panel may have no runs)
    for ax in grid[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if any(departs):
        entries[DEPARTS] = Line2D([], [], linestyle="none")
    fig.legend(list(entries.values()), list(entries), loc="outside lower center", fontsize=7,
               frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig


def _table_panel(ax: Axes, items: list[RowResult], metric: str) -> None:
    ax.scatter(range(len(items)), [r.number.value for r in items], marker="x", color="black",
               s=50, label="paper", zorder=3)
    ran = [(x, r) for x, r in enumerate(items) if r.mean is not None]
    shown: list[float] = [r.number.value for r in items]
    if ran:
        _ours(ax, [float(x) for x, _ in ran], [r for _, r in ran])
        for _, r in ran:
            hw, mean = half_width(r) or 0.0, r.mean or 0.0
            shown += [mean - hw, mean + hw]
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    if lower_is_better(metric):
        axes.readable_scale(ax, "y", [max(v, 0.0) for v in shown])
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.margins(x=0.15)


def _ours(ax: Axes, xs: list[float], rows: list[RowResult]) -> None:
    """Our means at ``xs`` with their 95 % intervals: a bar through a hollow marker (never
    hidden behind it), capped, and its half-width written beside it, which stays readable
    where the bar is shorter than the marker."""
    widths = [half_width(r) for r in rows]
    ax.errorbar(xs, [r.mean for r in rows], yerr=[w or 0.0 for w in widths], fmt="o",
                color="tab:blue", mfc="none", ms=7, elinewidth=1.6, capsize=5, capthick=1.6,
                label="ours (mean, 95 % interval)", zorder=2)
    for x, r, w in zip(xs, rows, widths, strict=True):
        digits = max(r.row.decimals, 2)
        ax.annotate("no interval" if w is None else f"±{w:.{digits}f}", (x, r.mean),
                    xytext=(7, 0), textcoords="offset points", fontsize=7, va="center",
                    color="tab:blue")


def size_figure(rows: Sequence[RowResult]) -> Figure:
    """RecNets' size-accuracy comparison: test error against parameters, the paper's rows
    (their printed counts) and ours (our models' counts), one panel per dataset."""
    datasets = sorted({r.number.dataset for r in rows})
    fig, grid = plt.subplots(1, len(datasets), squeeze=False, figsize=(5.5 * len(datasets), 4.4))
    for ax, dataset in zip(grid[0], datasets, strict=True):
        items = [r for r in rows if r.number.dataset == dataset and r.row.params]
        ax.scatter([r.row.params for r in items], [100 - r.number.value for r in items],
                   marker="x", color="black", label="paper")
        for r in items:
            ax.annotate(r.row.row.replace("RecNet", ""), (r.row.params, 100 - r.number.value),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
        ours = [r for r in rows if r.number.dataset == dataset and r.mean is not None]
        counts = [float(r.row.params) for r in items if r.row.params]
        if ours:
            params = [statistics.fmean(x.results["params"] for x in r.runs) for r in ours]
            widths = [half_width(r) for r in ours]
            ax.errorbar(params, [100 - (r.mean or 0.0) for r in ours],
                        yerr=[w or 0.0 for w in widths], fmt="o", mfc="none", color="tab:blue",
                        capsize=4, label="ours (mean, 95 % interval)")
            counts += params
        axes.readable_scale(ax, "x", counts, axes.count)
        ax.set_xlabel("parameters")
        ax.set_ylabel("test error (%)")
        ax.set_title(dataset, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("RecNets Tables 3-4: size against error", fontsize=11)
    return _laid_out(fig)


# -- training curves ----------------------------------------------------------------------------
def curves_figure(runs: Sequence[Run], labels: Sequence[str], title: str) -> Figure:
    """Per epoch, one panel each: every run's validation error (test error, dashed, where
    it has no validation split), its training loss and its learning rate (where
    metrics.csv has them); the learning-rate cuts as dotted vertical lines in the run's
    colour on every panel, between the last epoch at the old rate and the first at the new."""
    drawn = [curves(run) for run in runs]
    panels = ["error", *(name for name in ("train_loss", "lr")
                         if any(getattr(c, name).values for c in drawn))]
    fig, grid = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                             figsize=(7.5, 4.2 + 2.1 * (len(panels) - 1)),
                             height_ratios=[2] + [1] * (len(panels) - 1))
    panel_axes = dict(zip(panels, grid[:, 0], strict=True))
    for c, label in zip(drawn, labels, strict=True):
        style = "-" if c.kind.startswith("validation") else "--"
        (line,) = panel_axes["error"].plot(c.error.epochs, c.error.values, style, marker=".",
                                           label=label if len(runs) <= LEGEND_RUNS else None)
        for name in panels[1:]:
            series = getattr(c, name)
            panel_axes[name].plot(series.epochs, series.values, style, marker=".",
                                  color=line.get_color())
        for ax in panel_axes.values():
            for cut in c.cuts:
                ax.axvline(cut - 0.5, color=line.get_color(), linestyle=":", alpha=0.7)
    _curves_axes(panel_axes, drawn)
    if len(runs) <= LEGEND_RUNS:
        panel_axes["error"].legend(fontsize=7)
    panel_axes["error"].set_title(title, fontsize=10)
    return _laid_out(fig)


def _curves_axes(panel_axes: dict[str, Axes], drawn: list[Curves]) -> None:
    ylabels = {"error": "error (%): validation, or test (dashed)",
               "train_loss": "training loss", "lr": "learning rate"}
    if any(c.cuts for c in drawn):
        ylabels["error"] += "\n(dotted: learning-rate cuts)"
    for name, ax in panel_axes.items():
        axes.readable_scale(ax, "y", [v for c in drawn for v in getattr(c, name).values])
        ax.set_ylabel(ylabels[name], fontsize=8 if name != "error" else 10)
        ax.grid(alpha=0.3, which="both")
    bottom = list(panel_axes.values())[-1]
    axes.integer_axis(bottom, "x", [e for c in drawn for e in c.error.epochs])
    bottom.set_xlabel("epoch")


# -- sweeps and searches ------------------------------------------------------------------------
def sweep_figure(sweep: Sweep, key: str, metric: str) -> Figure:
    """A metric against one swept key: every job (small points), and per setting (jobs that
    differ in their seed alone) the mean ± std over its seeds, joined along ``key`` where
    the sweep's other keys keep their values, one line for each of their settings (up to
    MAX_SERIES; a search's trials, which share none, are points alone). A numeric key on a
    numeric axis, any other (``model``) one position per value."""
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    numeric = sweep.numeric(key)
    order = list(dict.fromkeys(sweep.value(r, key) for r in sweep.runs))

    def x(run: Run) -> float:
        value = sweep.value(run, key)
        return float(value) if numeric else float(order.index(value))

    others = [k for k in sweep.setting_keys if k != key]
    settings = list(sweep.settings().values())
    series: dict[tuple[str, ...], list[list[Run]]] = {}
    for members in settings:
        series.setdefault(tuple(sweep.value(members[0], k) for k in others), []).append(members)
    lines = len(series) <= MAX_SERIES
    repeats = any(len(members) > 1 for members in settings)
    for n, (rest, settings) in enumerate(series.items()):
        color = f"C{n % 10}" if lines else "tab:gray"
        if repeats or not lines:
            jobs = [(x(r), y) for members in settings for r in members
                    if (y := r.metric(metric)) is not None]
            ax.scatter([p for p, _ in jobs], [y for _, y in jobs], color=color, s=12,
                       alpha=0.6, label="jobs" if n == 0 else None)
        if lines:
            label = ", ".join(f"{k}={v}" for k, v in zip(others, rest, strict=True))
            what = "mean ± std over seeds" if repeats else "jobs"
            _setting_means(ax, settings, x, metric, color, "o-" if numeric else "o",
                           f"{label} ({what})" if label else what)
    if numeric:
        axes.value_ticks(ax, "x", [x(r) for r in sweep.runs])
    else:
        ax.set_xticks(range(len(order)), order, rotation=20 if len(order) > 3 else 0,
                      ha="right" if len(order) > 3 else "center", fontsize=8)
        ax.margins(x=0.2)
    ax.set_xlabel(key)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{sweep.directory.name}: {metric} against {key}", fontsize=10)
    return _laid_out(fig)


def _setting_means(ax: Axes, settings: list[list[Run]], x: Callable[[Run], float],
                   metric: str, color: str, fmt: str, label: str) -> None:
    """The settings' means along the plotted key, each with the std over its seeds as its
    bar (none for a setting run once)."""
    points = []
    for members in settings:
        values = [y for r in members if (y := r.metric(metric)) is not None]
        if values:
            points.append((x(members[0]), statistics.fmean(values),
                           statistics.stdev(values) if len(values) > 1 else 0.0))
    points.sort()
    if points:
        ax.errorbar([p for p, _, _ in points], [m for _, m, _ in points],
                    yerr=[s for _, _, s in points], fmt=fmt, color=color, capsize=4,
                    label=label)


def search_figure(search: Search) -> Figure:
    """A search's trials in the order they ran, each one's metric and the best so far."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    points = sorted((job_order(r.directory)[0], r.metric(search.metric))
                    for r in search.sweep.runs)
    points = [(n, y) for n, y in points if y is not None]
    ax.scatter([n for n, _ in points], [y for _, y in points], color="tab:gray", s=14,
               label="trials")
    best: list[float] = []
    for _, y in points:
        best.append(max(y, best[-1]) if best else y)
    ax.step([n for n, _ in points], best, where="post", color="tab:blue", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(METRIC_LABELS.get(search.metric, search.metric))
    axes.integer_axis(ax, "x", [n for n, _ in points])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{search.sweep.directory.name}: {search.metric} by trial", fontsize=10)
    return _laid_out(fig)


__all__ = ["DAGGER", "curves_figure", "half_width", "save", "search_figure", "size_figure",
           "sweep_figure", "table_figure"]
