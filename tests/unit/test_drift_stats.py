"""Statistics equal scipy's where scipy implements the same test (property tests)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from driftscope_llm.services.drift.detectors.psi import psi
from driftscope_llm.services.drift.detectors.wasserstein import permuted_w1
from driftscope_llm.services.drift.effects import merged_ecdf
from driftscope_llm.services.drift.permutation import random_masks
from driftscope_llm.services.drift.stats import (
    category_test,
    fisher_two_sided,
    ks_critical,
    ks_pvalue,
    pearson_chi2,
)

REL = 1e-9  # floating-point agreement with scipy

# Samples with many ties (small integer grid) or none (floats), never empty.
values = st.one_of(
    st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=60),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=1,
             max_size=60),
)


@given(values, values)
@settings(max_examples=200, deadline=None)
def test_wasserstein_and_ks_equal_scipy(a: list[float], b: list[float]) -> None:
    m = merged_ecdf(np.sort(a), np.sort(b))
    w = stats.wasserstein_distance(a, b)
    assert m.w1 == pytest.approx(w, rel=REL, abs=1e-9 * (1 + max(map(abs, a + b))))
    with warnings.catch_warnings():  # scipy's own p-value warns on 1-element samples
        warnings.simplefilter("ignore", RuntimeWarning)
        d = stats.ks_2samp(a, b, method="asymp").statistic
    assert m.ks == pytest.approx(d, abs=1e-12)


@given(st.integers(5, 400), st.integers(5, 400), st.floats(0.0, 1.0))
@settings(max_examples=100, deadline=None)
def test_ks_pvalue_equals_scipy_asymptotic(n1: int, n2: int, d: float) -> None:
    rng = np.random.default_rng(n1 * 1000 + n2)
    a, b = rng.normal(size=n1), rng.normal(d, 1.0, size=n2)
    ref = stats.ks_2samp(a, b, method="asymp")
    m = merged_ecdf(np.sort(a), np.sort(b))
    # alpha = 1 forces the kstwo path: the value scipy reports
    assert ks_pvalue(m.ks, n1, n2, alpha=1.0) == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


def test_ks_screen_and_critical_value_are_consistent() -> None:
    alpha = 1e-5
    crit = ks_critical(alpha, 1000, 2000)
    assert ks_pvalue(crit, 1000, 2000, alpha) == pytest.approx(alpha, rel=1e-3)
    assert ks_pvalue(crit * 0.9, 1000, 2000, alpha) > alpha
    assert ks_pvalue(crit * 1.1, 1000, 2000, alpha) < alpha


tables = st.lists(st.integers(0, 60), min_size=4, max_size=4)


@given(tables)
@settings(max_examples=300, deadline=None)
def test_fisher_equals_scipy(t: list[int]) -> None:
    a, b, c, d = t
    expected = stats.fisher_exact([[a, b], [c, d]]).pvalue
    assert fisher_two_sided(a, b, c, d) == pytest.approx(expected, rel=1e-6, abs=1e-12)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=2, max_size=6))
@settings(max_examples=200, deadline=None)
def test_chi2_and_category_test(cols: list[tuple[int, int]]) -> None:
    w = np.array([c[0] for c in cols], dtype=np.float64)
    r = np.array([c[1] for c in cols], dtype=np.float64)
    stat, p, df = category_test(r, w)
    assert 0.0 <= p <= 1.0
    keep = (w + r) > 0
    if keep.sum() >= 2 and w.sum() > 0 and r.sum() > 0:
        table = np.vstack((w[keep], r[keep]))
        ref = stats.chi2_contingency(table, correction=False)
        assert stat == pytest.approx(ref.statistic, rel=1e-9, abs=1e-12)
        assert pearson_chi2(table) == pytest.approx(ref.statistic, rel=1e-9, abs=1e-12)
        assert df == ref.dof
    else:
        assert (stat, p) == (0.0, 1.0)


def test_category_test_is_exact_for_rare_categories() -> None:
    # 20 expected events; the chi-square tail would be far too small at 39 observed
    ref = np.array([40.0, 1960.0])
    win = np.array([39.0, 961.0])
    _, p, _ = category_test(ref, win)
    exact = stats.fisher_exact([[39, 961], [40, 1960]]).pvalue
    assert p == pytest.approx(exact, rel=1e-6)
    assert p > stats.chi2_contingency(np.vstack((win, ref)), correction=False).pvalue


@given(st.integers(2, 40), st.integers(2, 40), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_permutation_statistics_match_direct_computation(nw: int, nr: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pooled = np.sort(np.round(rng.normal(size=nw + nr), 1))
    masks = random_masks(pooled.size, nw, 5, rng)
    assert (masks.sum(axis=1) == nw).all()
    got = permuted_w1(pooled, masks)
    for row, mask in zip(got, masks, strict=True):
        assert row == pytest.approx(stats.wasserstein_distance(pooled[mask], pooled[~mask]),
                                    rel=1e-9, abs=1e-12)
    bins = rng.integers(0, 4, size=nw + nr)
    onehot = np.eye(4)[bins]
    cw = masks.astype(np.float64) @ onehot
    batch = psi(cw, onehot.sum(axis=0)[None, :] - cw)
    for row, mask in zip(batch, masks, strict=True):
        single = psi(np.bincount(bins[mask], minlength=4).astype(float),
                     np.bincount(bins[~mask], minlength=4).astype(float))
        assert row == pytest.approx(float(single), rel=1e-12)
