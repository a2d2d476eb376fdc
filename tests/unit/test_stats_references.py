"""The drift statistics against references written independently of the code under test.

* PSI: a plain-Python population stability index from raw values (bins assigned by walking the
  cut points, half-count smoothing, ``Σ (p_w - p_r) ln(p_w / p_r)``), compared with
  :func:`~driftscope_llm.services.drift.detectors.psi.psi` on counts and with the batched form
  the permutation test uses (a row per permuted window, built from one-hot bins by a matrix
  product) — never the PSI function compared with itself.
* KS: :func:`~driftscope_llm.services.drift.stats.ks_statistic` against
  ``scipy.stats.ks_2samp``'s statistic; both branches of
  :func:`~driftscope_llm.services.drift.stats.ks_pvalue` as the detector meets them (the exact
  ``kstwo`` branch near the level, the asymptotic Kolmogorov branch far above it) against
  ``ks_2samp(method="asymp")``; and the critical value
  :func:`~driftscope_llm.services.drift.stats.ks_critical` against the *exact* two-sample null
  distribution (``ks_2samp(method="exact")``): its true level stays within :data:`LEVEL_SLACK`
  of the budget, and one lattice step below it the exact tail is above the budget (not
  needlessly conservative).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from driftscope_llm.services.drift.detectors.psi import psi
from driftscope_llm.services.drift.permutation import random_masks
from driftscope_llm.services.drift.stats import KS_SCREEN, ks_critical, ks_pvalue, ks_statistic

#: Floating-point agreement of two computations of the same formula.
REL = 1e-9
#: How far above the budget the exact level of the KS critical value may lie. The critical value
#: comes from ``kstwo`` at the effective size ``n1 n2 / (n1 + n2)``; against the exact
#: two-sample law it measured at most 1.31x (n1 = n2 = 50, alpha = 1e-3) over the grid below.
LEVEL_SLACK = 1.5
#: The asymptotic branch is only used far above the level; there it may differ from scipy's
#: finite-n value by this much (the Kolmogorov law's error shrinks like 1/sqrt(n); measured
#: 0.062 at worst over the pairs below, at p ~ 0.7, where the value is only shown in metrics).
ASYMPTOTIC_ATOL = 0.1


def reference_psi(window: list[float], reference: list[float], edges: list[float]) -> float:
    """PSI written from the definition, one value and one bin at a time."""
    k = len(edges) + 1

    def counts(values: list[float]) -> list[int]:
        out = [0] * k
        for v in values:
            b = 0
            while b < len(edges) and v >= edges[b]:  # bin b holds edges[b-1] <= v < edges[b]
                b += 1
            out[b] += 1
        return out

    cw, cr = counts(window), counts(reference)
    total = 0.0
    for w, r in zip(cw, cr, strict=True):
        pw = (w + 0.5) / (len(window) + 0.5 * k)
        pr = (r + 0.5) / (len(reference) + 0.5 * k)
        total += (pw - pr) * math.log(pw / pr)
    return total


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    k = edges.size + 1
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=k).astype(float)


samples = st.lists(st.integers(-20, 20).map(lambda v: v / 4), min_size=3, max_size=80)


@given(samples, samples, st.integers(2, 10))
@settings(max_examples=200, deadline=None)
def test_psi_equals_the_definition(window: list[float], reference: list[float],
                                   bins: int) -> None:
    ref = np.asarray(reference)
    edges = np.unique(np.quantile(ref, np.arange(1, bins) / bins))  # as the detector cuts
    got = float(psi(bin_counts(np.asarray(window), edges), bin_counts(ref, edges)))
    want = reference_psi(window, reference, edges.tolist())
    assert got == pytest.approx(want, rel=REL, abs=1e-15)
    assert got >= 0.0


@given(st.integers(3, 40), st.integers(3, 40), st.integers(2, 8), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_batched_psi_of_permuted_windows_equals_the_definition(nw: int, nr: int, bins: int,
                                                               seed: int) -> None:
    """The permutation test's batch (``masks @ onehot``) against PSI of the explicit split."""
    rng = np.random.default_rng(seed)
    pooled = np.round(rng.normal(size=nw + nr), 1)
    edges = np.unique(np.quantile(pooled[nw:], np.arange(1, bins) / bins))
    onehot = np.eye(edges.size + 1)[np.searchsorted(edges, pooled, side="right")]
    masks = random_masks(pooled.size, nw, 6, rng)
    cw = masks.astype(np.float64) @ onehot
    batch = psi(cw, onehot.sum(axis=0)[None, :] - cw)
    assert batch.shape == (6,)
    for row, mask in zip(batch, masks, strict=True):
        want = reference_psi(pooled[mask].tolist(), pooled[~mask].tolist(), edges.tolist())
        assert float(row) == pytest.approx(want, rel=REL, abs=1e-15)


def test_psi_grows_with_the_shift() -> None:
    """A known case by hand: all of the window in one of two equal reference bins."""
    want = (3.5 / 4 - 0.5) * math.log((3.5 / 4) / 0.5) + (0.5 / 4 - 0.5) * math.log(
        (0.5 / 4) / 0.5)
    assert reference_psi([1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.5]) == pytest.approx(want)
    assert float(psi(np.array([0.0, 3.0]), np.array([2.0, 2.0]))) == pytest.approx(want)


ks_values = st.one_of(
    st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=60),  # many ties
    st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=1,
             max_size=60),
)


@given(ks_values, ks_values)
@settings(max_examples=200, deadline=None)
def test_ks_statistic_equals_scipy(a: list[float], b: list[float]) -> None:
    with warnings.catch_warnings():  # scipy's p-value warns on 1-element samples
        warnings.simplefilter("ignore", RuntimeWarning)
        want = stats.ks_2samp(a, b, method="asymp").statistic
    assert ks_statistic(np.sort(a), np.sort(b)) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("alpha", [1e-3, 1e-5])
def test_both_branches_of_the_ks_pvalue_against_scipy(alpha: float) -> None:
    """Random sample pairs from no shift to a large one: each lands in one branch; both occur."""
    rng = np.random.default_rng(7)
    branches = {"kstwo": 0, "kolmogorov": 0}
    for _ in range(300):
        n1, n2 = (int(v) for v in rng.integers(20, 2000, size=2))
        a, b = rng.normal(size=n1), rng.normal(rng.uniform(0.0, 0.4), 1.0, size=n2)
        ref = stats.ks_2samp(a, b, method="asymp")
        got = ks_pvalue(ks_statistic(np.sort(a), np.sort(b)), n1, n2, alpha)
        en = n1 * n2 / (n1 + n2)
        if float(stats.kstwobign.sf(math.sqrt(en) * ref.statistic)) > KS_SCREEN * alpha:
            branches["kolmogorov"] += 1
            assert got == pytest.approx(ref.pvalue, abs=ASYMPTOTIC_ATOL)
            assert ref.pvalue > alpha  # the cheap branch never changes a decision
        else:
            branches["kstwo"] += 1
            assert got == pytest.approx(ref.pvalue, rel=REL, abs=1e-300)
    assert min(branches.values()) >= 30, branches


@pytest.mark.parametrize("n", [20, 50, 100, 200])
@pytest.mark.parametrize("alpha", [1e-2, 1e-3, 1e-4])
def test_ks_critical_value_holds_its_level_under_the_exact_law(n: int, alpha: float) -> None:
    """n1 = n2 = n: D lives on the lattice j/n, and ``a = 0..n-1`` vs ``b = a + j`` has D = j/n,
    so scipy's exact two-sample p-value at that pair is ``P(D >= j/n)`` under no drift."""
    crit = ks_critical(alpha, n, n)
    j = math.ceil(crit * n - 1e-9)  # the smallest D the detector rejects at

    def exact_tail(j: int) -> float:
        a = np.arange(n, dtype=float)
        res = stats.ks_2samp(a, a + j, method="exact")
        assert res.statistic == pytest.approx(j / n)
        return float(res.pvalue)

    assert exact_tail(j) <= LEVEL_SLACK * alpha
    assert exact_tail(j - 1) > alpha
