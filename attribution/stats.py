"""Bootstrap confidence intervals for the evaluation's means (pure Python, seeded).

:func:`bootstrap_mean` resamples the values with replacement ``draws`` times and takes the
percentile interval of the resampled means (Efron & Tibshirani 1993, ch. 13). The values are
per-query scores, so the interval says how much the mean would move with another draw of queries
of the same kind — not how it would move on another task family.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Interval", "bootstrap_mean"]


@dataclass(frozen=True)
class Interval:
    """A mean with its (default 95%) bootstrap percentile interval ``[lo, hi]``."""

    mean: float
    lo: float
    hi: float

    def to_json(self) -> dict[str, float]:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi}

    def __str__(self) -> str:
        return f"{self.mean:.2f} [{self.lo:.2f}, {self.hi:.2f}]"


def bootstrap_mean(values: Sequence[float], *, draws: int = 1000, level: float = 0.95,
                   seed: int = 0) -> Interval:
    """Mean of ``values`` with a percentile bootstrap interval; NaN interval for no values."""
    n = len(values)
    if n == 0:
        nan = float("nan")
        return Interval(nan, nan, nan)
    mean = sum(values) / n
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(draws))
    tail = (1.0 - level) / 2.0
    lo = means[int(tail * (draws - 1))]
    hi = means[round((1.0 - tail) * (draws - 1))]
    return Interval(mean, lo, hi)
