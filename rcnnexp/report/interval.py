"""How far ours may lie from the paper's number by chance: a 95 % interval around our mean
from the test set's own sampling error and the spread over seeds, and the verdict it gives.

A test error measured on n_test images is a binomial proportion: even the same model scored
on another n_test images drawn alike would land within about sqrt(p(1-p)/n_test) of it (one
standard error). The papers measured on the same fixed test sets as we do, so that is the
noise a matching number may differ by; ±0.5 points, the old verdict, was four times it for
MNIST's 10,000 images at 0.42 %.

The standard error of a row's mean over its n runs (seeds) is

    SE = sqrt(SE_binom² + s²/n),   SE_binom = sqrt(p(1-p)/n_test),

with p our mean (as a fraction), s the sample standard deviation over the runs (0 for one
run). The test set is the same for every seed, so its sampling error does not average out
over seeds: every seed is scored on the same draw of test images, and the binomial term
stays whole rather than shrinking as SE_binom²/n. The seeds' spread measures training noise
(initialisation, batch order, augmentation), which does average out, as s²/n. The two terms
overlap a little (seeds that disagree on an image also show its sampling noise in s), which
makes the interval slightly wider than the least it could be, never narrower. Where the runs
score different test sets (SUN397's partitions) the binomial term would shrink with n too;
the whole term is kept there as well, again erring wide.

The interval is mean ± 1.96·SE. The paper's number inside it is "reproduced"; outside, the
verdict says whether ours lies above or below the paper's (in the metric's own direction:
an error above the paper's is worse, an accuracy above it better) and by how many SE. The
paper's own training noise is unknown (they report one number) and is not in the interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.96  # the standard normal's 97.5 % quantile (1.95996...): a two-sided 95 % interval

# the official test sets' sizes, for a results.json written before runs recorded
# ``test_images``: the sizes the dataset schemas and modules document (rcnnexp/config/
# dataset.py, rcnnexp/data/; docs/data.md), i.e. what a run of the full dataset evaluates.
# A dataset missing here (digits: a fraction of 1,797 images) gets no interval from an old
# results.json.
OFFICIAL_TEST_IMAGES = {
    "mnist": 10_000,
    "cifar10": 10_000,
    "cifar100": 10_000,
    "svhn": 26_032,
    "imagenet": 50_000,  # ILSVRC-2012's validation images, the papers' test set
    "sun397": 19_850,  # one partition: 50 test images of each of 397 classes
    "mitindoor": 1_340,  # the official TestImages.txt
}

REPRODUCED = "reproduced"
NOT_RUN = "not run yet"
NO_INTERVAL = "no interval: test-set size unknown"


def binomial_se(percent: float, test_images: int) -> float:
    """One standard error, in points, of a percentage measured on ``test_images`` images:
    100·sqrt(p(1-p)/n) with p = ``percent``/100 (an accuracy's is its error's)."""
    if test_images <= 0:
        raise ValueError(f"test_images={test_images}: a test set has at least one image")
    p = min(max(percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / test_images)


@dataclass(frozen=True)
class Interval:
    """Our mean over n runs with its standard error and 95 % interval, in points."""

    mean: float
    n: int
    test_images: int
    se_test: float  # the test set's binomial sampling error at our mean
    se_seeds: float  # s/sqrt(n), the seeds' standard error of the mean (0 for one run)

    @property
    def se(self) -> float:
        """sqrt(SE_binom² + s²/n): the test set's error whole (the same test set for every
        seed), the seeds' averaged over them."""
        return math.hypot(self.se_test, self.se_seeds)

    @property
    def half_width(self) -> float:
        return Z95 * self.se

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def holds(self, value: float) -> bool:
        """Whether ``value`` lies inside the 95 % interval (its ends included, up to the
        rounding of printed numbers)."""
        return self.low - 1e-9 <= value <= self.high + 1e-9

    def z(self, value: float) -> float | None:
        """How many standard errors our mean lies from ``value`` (positive: ours above);
        None when SE is 0 (one run with no error, or none right: no sampling error to
        measure by)."""
        return None if self.se == 0.0 else (self.mean - value) / self.se


def interval(values: Sequence[float], test_images: int | None) -> Interval | None:
    """The interval of the mean of ``values`` (one per run, in percent) on a test set of
    ``test_images`` images; None without values or a test-set size."""
    if not values or test_images is None:
        return None
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return Interval(mean, len(values), test_images, binomial_se(mean, test_images), spread)


def lower_is_better(metric: str) -> bool:
    """Errors (``test_error``, ``test_top5_error``) are better low, accuracies high."""
    return metric.endswith("error")


def verdict(paper: float, ours: Interval | None, metric: str, ran: bool = True) -> str:
    """``reproduced`` when the paper's number lies inside our 95 % interval; otherwise where
    ours lies from the paper's, in SE: "ours above the paper by 8.1 SE (worse)" (ours is the
    subject; worse or better in the metric's direction)."""
    if not ran:
        return NOT_RUN
    if ours is None:
        return NO_INTERVAL
    if ours.holds(paper):
        return REPRODUCED
    side = "above" if ours.mean > paper else "below"
    worse = (side == "above") == lower_is_better(metric)
    z = ours.z(paper)
    by = "with SE 0" if z is None else f"by {abs(z):.1f} SE"
    return f"ours {side} the paper {by} ({'worse' if worse else 'better'})"


__all__ = ["NOT_RUN", "NO_INTERVAL", "OFFICIAL_TEST_IMAGES", "REPRODUCED", "Z95", "Interval",
           "binomial_se", "interval", "lower_is_better", "verdict"]
