"""Effect sizes: how large a change is, in units an operator set a minimum for.

One effect measure per signal kind, shared by all window tests of a signal, so that "the minimum
effect" means one thing per signal whatever test noticed the change:

* continuous: Wasserstein-1 distance between window and reference, ``∫|F_w - F_r| dx`` (Vallender
  1973), divided by the reference std, the absolute reference mean, or 1 (``effect_unit``). For a
  pure location shift it equals the absolute mean shift; unlike a mean it also sees changes of
  spread or shape. It is non-negative and 0 only for identical samples.
* boolean: the absolute change of the rate, ``|p_w - p_r|``; the relative change
  ``|p_w/p_r - 1|`` must also reach ``min_relative_effect``.
* categorical: total variation distance ``½ Σ_c |p_w(c) - p_r(c)|`` (0 to 1: the share of events
  that would have to change category).
* embedding: total variation distance between the window's and the held-out reference's shares
  of the reference topic clusters (the share of outputs that moved between topics).

A window raises only when its effect reaches the minimum: a change smaller than that never raises,
however large the window, because the effect estimate converges to the true (small) change.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift.embedding_space import EmbeddingReference
from driftscope_llm.services.drift.reference import (
    BooleanReference,
    CategoricalReference,
    ContinuousReference,
    SignalReference,
)
from driftscope_llm.services.drift.settings import EffectUnit, SignalConfig
from driftscope_llm.services.drift.window import SignalWindow

__all__ = [
    "Effect",
    "MergedEcdf",
    "WindowView",
    "continuous_scale",
    "merged_ecdf",
    "shares_tv",
    "wasserstein1",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Effect:
    """The effect size of a window: ``size`` in ``unit``; ``passes`` when it reaches the signal's
    minimum; ``focus`` the category or cluster that grew most (categorical/embedding)."""

    size: float
    unit: str
    direction: str
    passes: bool
    focus: Any = None


def wasserstein1(a_sorted: FloatArray, b_sorted: FloatArray) -> float:
    """Wasserstein-1 distance of two sorted samples (scipy.stats.wasserstein_distance's value)."""
    if a_sorted.size == 0 or b_sorted.size == 0:
        return math.nan
    return merged_ecdf(a_sorted, b_sorted).w1


@dataclass(frozen=True, slots=True)
class MergedEcdf:
    """Both ECDFs on the merged sorted sample: ``w1`` (Wasserstein-1) and ``ks`` (KS ``D``)."""

    w1: float
    ks: float


def merged_ecdf(a_sorted: FloatArray, b_sorted: FloatArray) -> MergedEcdf:
    """Walk the merged sorted sample once; both statistics agree with scipy's."""
    na, nb = a_sorted.size, b_sorted.size
    pos = np.searchsorted(b_sorted, a_sorted, side="right") + np.arange(na)
    n = na + nb
    from_a = np.zeros(n, dtype=bool)
    from_a[pos] = True
    merged = np.empty(n)
    merged[pos] = a_sorted
    merged[~from_a] = b_sorted
    ca = np.cumsum(from_a)
    diff = np.abs(ca / na - (np.arange(1, n + 1) - ca) / nb)
    gaps = np.diff(merged)
    ends = gaps > 0  # last element of each run of ties (the ECDFs are right-continuous)
    w1 = float(diff[:-1] @ gaps)
    ks = float(diff[:-1][ends].max()) if ends.any() else 0.0
    return MergedEcdf(w1, max(ks, float(diff[-1])))


def continuous_scale(config: SignalConfig, ref: ContinuousReference) -> float:
    """Signal units per effect unit (reference std, |reference mean|, or 1); 0 if undefined."""
    if config.effect_unit is EffectUnit.STD:
        s = ref.std
    elif config.effect_unit is EffectUnit.RELATIVE:
        s = abs(ref.mean)
    else:
        s = 1.0
    return s if math.isfinite(s) and s > 0 else 0.0


def _direction(delta: float) -> str:
    return "increase" if delta > 0 else "decrease" if delta < 0 else "shift"


def shares_tv(ref_counts: dict[Any, int], win_counts: dict[Any, int]) -> tuple[float, Any, float]:
    """Total variation distance of two count tables, the key that grew most, and its growth."""
    n_r, n_w = sum(ref_counts.values()), sum(win_counts.values())
    keys = set(ref_counts) | set(win_counts)
    tv, focus, best = 0.0, None, -math.inf
    for k in sorted(keys, key=str):
        d = win_counts.get(k, 0) / n_w - ref_counts.get(k, 0) / n_r
        tv += abs(d)
        if d > best:
            focus, best = k, d
    return 0.5 * tv, focus, best


class WindowView:
    """One test round's read-only view of a non-empty window, caching what several tests share
    (the sorted values and the merged ECDFs of continuous signals, the effect)."""

    def __init__(self, config: SignalConfig, ref: SignalReference, window: SignalWindow) -> None:
        self.config = config
        self.reference = ref
        self.window = window
        self._floats: FloatArray | None = None
        self._sorted: FloatArray | None = None
        self._merged: MergedEcdf | None = None
        self._effect: Effect | None = None

    def __len__(self) -> int:
        return len(self.window)

    def floats(self) -> FloatArray:
        if self._floats is None:
            self._floats = self.window.floats()
        return self._floats

    def sorted(self) -> FloatArray:
        if self._sorted is None:
            self._sorted = np.sort(self.floats())
        return self._sorted

    def merged(self) -> MergedEcdf:
        """Window vs reference ECDFs (continuous signals)."""
        if self._merged is None:
            assert isinstance(self.reference, ContinuousReference)
            self._merged = merged_ecdf(self.sorted(), self.reference.values)
        return self._merged

    @property
    def effect(self) -> Effect:
        if self._effect is None:
            self._effect = self._compute_effect()
        return self._effect

    def _compute_effect(self) -> Effect:
        cfg, ref = self.config, self.reference
        if isinstance(ref, ContinuousReference):
            scale = continuous_scale(cfg, ref)
            dist = self.merged().w1 if ref.n else math.nan
            size = dist / scale if scale > 0 else (math.inf if dist > 0 else 0.0)
            return Effect(size, f"wasserstein/{cfg.effect_unit.value}",
                          _direction(float(self.floats().mean()) - ref.mean),
                          size >= cfg.min_effect)
        if isinstance(ref, BooleanReference):
            delta = float(self.floats().mean()) - ref.rate
            rel = abs(delta) / ref.rate if ref.rate > 0 else (math.inf if delta else 0.0)
            passes = abs(delta) >= cfg.min_effect and rel >= cfg.min_relative_effect
            return Effect(abs(delta), "rate_difference", _direction(delta), passes)
        if isinstance(ref, CategoricalReference):
            tv, focus, _ = shares_tv(ref.counts, self.window.category_counts())
            return Effect(tv, "total_variation", "shift", tv >= cfg.min_effect, focus)
        assert isinstance(ref, EmbeddingReference)
        win = Counter(int(item[1]) for item in self.window.values())
        refc = {i: int(c) for i, c in enumerate(ref.cluster_counts) if c > 0}
        tv, focus, _ = shares_tv(refc, dict(win))
        return Effect(tv, "cluster_total_variation", "shift", tv >= cfg.min_effect, focus)

    def summary(self) -> dict[str, Any]:
        """Window statistics comparable with the reference's ``summary()``."""
        ref, n = self.reference, len(self.window)
        if isinstance(ref, ContinuousReference):
            x = self.floats()
            return {"n": n, "mean": float(x.mean()), "std": float(x.std()),
                    "median": float(np.median(x))}
        if isinstance(ref, BooleanReference):
            return {"n": n, "rate": float(self.floats().mean())}
        if isinstance(ref, CategoricalReference):
            counts = Counter(self.window.values())
            return {"n": n, "shares": {str(c): k / n for c, k in sorted(counts.items())}}
        assert isinstance(ref, EmbeddingReference)
        win = Counter(int(item[1]) for item in self.window.values())
        return {"n": n, "cluster_shares": [round(win.get(i, 0) / n, 6)
                                           for i in range(ref.centroids.shape[0])]}
