"""Two-sample test statistics, vectorised and fast enough to run every few dozen events.

Each function names the scipy function it agrees with; the unit tests check the agreement.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln, kolmogorov
from scipy.stats import chi2, kstwo

__all__ = [
    "category_test",
    "chi2_isf",
    "fisher_two_sided",
    "ks_critical",
    "ks_pvalue",
    "ks_statistic",
    "pearson_chi2",
]

FloatArray = npt.NDArray[np.float64]

# p-values further than this factor above the level come from the asymptotic Kolmogorov law.
KS_SCREEN = 100.0


def ks_statistic(a_sorted: FloatArray, b_sorted: FloatArray) -> float:
    """Two-sample Kolmogorov-Smirnov ``D = sup |F_a - F_b|`` (scipy.stats.ks_2samp's statistic)."""
    allv = np.concatenate((a_sorted, b_sorted))
    fa = np.searchsorted(a_sorted, allv, side="right") / a_sorted.size
    fb = np.searchsorted(b_sorted, allv, side="right") / b_sorted.size
    return float(np.max(np.abs(fa - fb)))


def ks_pvalue(d: float, n1: int, n2: int, alpha: float) -> float:
    """Two-sided p-value of ``D``: scipy's ``ks_2samp(method="asymp")`` value, i.e.
    ``kstwo.sf(D, round(n1 n2 / (n1 + n2)))``, whenever it could matter (within a factor
    :data:`KS_SCREEN` of ``alpha``); larger p-values come from the asymptotic Kolmogorov
    distribution (cheaper, and only shown in metrics)."""
    en = n1 * n2 / (n1 + n2)
    p_asym = float(kolmogorov(math.sqrt(en) * d))
    if p_asym > KS_SCREEN * alpha:
        return p_asym
    return float(kstwo.sf(d, max(1, round(en))))


@lru_cache(maxsize=4096)
def ks_critical(alpha: float, n1: int, n2: int) -> float:
    """The ``D`` whose p-value (as in :func:`ks_pvalue`) is ``alpha``."""
    return float(kstwo.isf(alpha, max(1, round(n1 * n2 / (n1 + n2)))))


@lru_cache(maxsize=1024)
def chi2_isf(alpha: float, df: int) -> float:
    return float(chi2.isf(alpha, df))


def pearson_chi2(table: FloatArray) -> float:
    """Pearson's X² of a contingency table without continuity correction
    (scipy.stats.chi2_contingency(table, correction=False)'s statistic). Columns with a zero
    total must be dropped beforehand."""
    total = table.sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    return float(np.sum((table - expected) ** 2 / expected))


def fisher_two_sided(a: int, b: int, c: int, d: int) -> float:
    """Fisher's exact test of the 2×2 table ``[[a, b], [c, d]]``, two-sided as in
    scipy.stats.fisher_exact: the total probability of tables no more likely than the observed
    one (relative tolerance 1e-7), under the hypergeometric law given the margins."""
    n1, n2, k = a + b, c + d, a + c
    lo, hi = max(0, k - n2), min(k, n1)
    if hi <= lo:
        return 1.0
    x = np.arange(lo, hi + 1, dtype=np.float64)
    logpmf = (gammaln(n1 + 1) - gammaln(x + 1) - gammaln(n1 - x + 1)
              + gammaln(n2 + 1) - gammaln(k - x + 1) - gammaln(n2 - k + x + 1)
              - gammaln(n1 + n2 + 1) + gammaln(k + 1) + gammaln(n1 + n2 - k + 1))
    pmf = np.exp(logpmf)
    obs = pmf[a - lo]
    return float(min(1.0, pmf[pmf <= obs * (1.0 + 1e-7)].sum()))


def category_test(ref_counts: FloatArray, win_counts: FloatArray) -> tuple[float, float, int]:
    """Reference vs window category counts (aligned arrays): ``(X², p, df)``.

    ``X²`` is Pearson's statistic over the categories seen in either sample (scipy's
    chi2_contingency without correction). The p-value is exact and valid at any level, also for
    rare categories where the χ² law is not: the smallest of the per-category two-sided Fisher
    tests (category vs the rest), times the number of categories (Bonferroni; with two categories
    both tests are the same test, so the factor is 1), capped at 1.
    """
    keep = (ref_counts + win_counts) > 0
    r, w = ref_counts[keep], win_counts[keep]
    k = int(r.size)
    if k < 2 or r.sum() == 0 or w.sum() == 0:
        return 0.0, 1.0, max(0, k - 1)
    stat = pearson_chi2(np.vstack((w, r)))
    nw, nr = int(w.sum()), int(r.sum())
    p_min = 1.0
    for wi, ri in zip(w.astype(np.int64), r.astype(np.int64), strict=True):
        p_min = min(p_min, fisher_two_sided(int(wi), nw - int(wi), int(ri), nr - int(ri)))
    return stat, min(1.0, p_min * (1 if k == 2 else k)), k - 1
