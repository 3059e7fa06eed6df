"""Readable axes for the report's figures: a scale and ticks a reader can read values off.

Matplotlib's log axis labels only powers of ten, so a short run whose errors lie between 85
and 90 % showed no number at all, and parameter counts between 0.2 and 8 M one (10⁶). Here a
quantity that spans a decade or more goes on a log axis labelled at 1, 2 and 5 of every
decade (fewer over more decades: :func:`log_ticks`), and one that spans less stays linear
with a few round ticks: either way at least three labelled ticks over its range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

DECADE = 10.0  # a range at least this wide (max / min) goes on a log axis
MAX_VALUE_TICKS = 8  # a swept key with at most this many values is labelled at each


def plain(value: float, _position: object = None) -> str:
    """A tick label as a reader writes the number: 0.5, 20, 1e-05 (no 10^x, no offset)."""
    return f"{value:g}"


def count(value: float, _position: object = None) -> str:
    """A parameter count: 500k, 1M, 2.5M."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"


def readable_scale(ax: Axes, which: str, values: Iterable[float],
                   label: Callable[[float, object], str] = plain) -> None:
    """The scale of ``ax``'s ``which`` axis ("x" or "y") for non-negative ``values``:
    logarithmic where the positive ones span a decade or more (symmetric-log down to the
    smallest of them where some are 0, so that a 0 stays on the chart), linear otherwise;
    labelled by ``label``."""
    finite = [v for v in values if math.isfinite(v)]
    positive = [v for v in finite if v > 0]
    if not positive or max(positive) / min(positive) < DECADE:
        _linear(ax, which, label)
    else:
        _log(ax, which, min(positive), max(positive), any(v <= 0 for v in finite), label)


def _axis(ax: Axes, which: str) -> Axis:
    """``ax``'s x or y axis, by ``which``."""
    return ax.xaxis if which == "x" else ax.yaxis


def _linear(ax: Axes, which: str, label: Callable[[float, object], str]) -> None:
    getattr(ax, f"set_{which}scale")("linear")
    axis = _axis(ax, which)
    axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    axis.set_major_formatter(FuncFormatter(label))


def _log(ax: Axes, which: str, low: float, high: float, zero: bool,
         label: Callable[[float, object], str]) -> None:
    """Log from ``low`` to ``high`` labelled at :func:`log_ticks`; with ``zero``, linear
    between 0 and ``low``."""
    ticks = log_ticks(low, high)
    if zero:
        getattr(ax, f"set_{which}scale")("symlog", linthresh=low, linscale=0.3)
        getattr(ax, f"set_{which}lim")(0, None)
        ticks = [0.0, *(t for t in ticks if t >= low)]
    else:
        getattr(ax, f"set_{which}scale")("log")
    axis = _axis(ax, which)
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_formatter(NullFormatter())  # minor labels overlap on a log axis


def log_ticks(low: float, high: float) -> list[float]:
    """Ticks from below ``low`` to above ``high`` at 1, 2 and 5 of every decade where they
    span up to two decades (any decade holds three of them), at 1 and 3 up to four, at 1
    alone beyond: at least three labels, never so many that they run into each other."""
    span = math.log10(high / low)
    subs = (1, 2, 5) if span <= 2 else (1, 3) if span <= 4 else (1,)
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [m * 10.0**e for e in range(first, last + 1) for m in subs]


def integer_axis(ax: Axes, which: str, values: Iterable[float]) -> None:
    """An axis of counts (epochs from 1, trials from 0): integer ticks, from 0 (or just
    before a count of 0) to just past the largest value, so that a run of one or two epochs
    is not drawn on an axis of 0.96, 0.98, ..."""
    axis = _axis(ax, which)
    values = list(values)
    low, top = min(values, default=1.0), max(values, default=1.0)
    getattr(ax, f"set_{which}lim")(min(0.0, low - 0.5), top + max(0.5, 0.03 * top))
    axis.set_major_locator(MaxNLocator(integer=True))
    axis.set_major_formatter(FuncFormatter(plain))


def value_ticks(ax: Axes, which: str, values: Iterable[float]) -> None:
    """A numeric swept key's axis: logarithmic where its values span a factor of 100 or more
    (a rate or decay searched on a log scale); a tick at each value where there are few of
    them (a reader looks up the settings, not the ruler); else round linear ticks."""
    distinct = sorted(set(values))
    if distinct and distinct[0] > 0 and distinct[-1] / distinct[0] >= 100:
        _log(ax, which, distinct[0], distinct[-1], False, plain)
    elif len(distinct) > MAX_VALUE_TICKS:
        _linear(ax, which, plain)
    else:
        axis = _axis(ax, which)
        axis.set_major_locator(FixedLocator(distinct))
        axis.set_major_formatter(FuncFormatter(plain))


__all__ = ["count", "integer_axis", "log_ticks", "plain", "readable_scale", "value_ticks"]
