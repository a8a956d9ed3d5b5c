"""Statistics of a benchmark cell: mean, sample standard deviation and a Student-t 95% confidence
interval over seeds, and how that interval sits against a published figure.

No scipy: the t quantile is found by bisection on the t distribution's CDF, computed from the
regularised incomplete beta function (continued fraction, as in Numerical Recipes, ch. 6.4).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Iterable

CONFIDENCE = 0.95
ABOVE, BELOW, CONSISTENT = "above the paper", "below the paper", "consistent with the paper"
SINGLE_SEED = "single seed, no claim"
NO_FIGURE = "no paper figure"


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
                          -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t value with P(T <= t) = p (e.g. p = 0.975 for a two-sided 95% interval)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


@dataclass(frozen=True)
class Summary:
    """Figures over seeds: n, mean, sample sd (n - 1 in the denominator) and the two-sided Student-t
    interval at `confidence`; sd and the interval are None for a single value."""

    n: int
    mean: float
    sd: float | None
    half_width: float | None
    low: float | None
    high: float | None
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(values: Iterable[float], confidence: float = CONFIDENCE) -> Summary:
    data = [float(v) for v in values]
    if not data:
        raise ValueError("no values to summarise")
    mean = statistics.fmean(data)
    if len(data) == 1:
        return Summary(1, mean, None, None, None, None, confidence)
    sd = statistics.stdev(data)
    half = t_quantile(0.5 + confidence / 2.0, len(data) - 1) * sd / math.sqrt(len(data))
    return Summary(len(data), mean, sd, half, mean - half, mean + half, confidence)


def verdict(summary: Summary, paper: float | None) -> str:
    """Where the published figure lies against the interval: "above the paper" only when the whole
    interval is above it (its lower bound higher than the paper's figure), "below the paper" only when
    the whole interval is below it, otherwise "consistent with the paper". A single seed gives no
    interval and so no claim."""
    if paper is None:
        return NO_FIGURE
    if summary.n < 2 or summary.low is None or summary.high is None:
        return SINGLE_SEED
    if summary.low > paper:
        return ABOVE
    if summary.high < paper:
        return BELOW
    return CONSISTENT
