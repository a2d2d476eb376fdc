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
    "EffectGate",
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


class EffectGate:
    """A cheap, exact-safe pre-check of a window's effect against the signal's minimum.

    A test round under no drift ends at the effect gate (:class:`WindowView.effect`); for a
    continuous signal that gate walks the merged ECDFs of window and reference, the costliest
    step of a quiet stream. :meth:`certainly_below` answers "the effect cannot reach the minimum"
    from an upper bound of the same Wasserstein-1 distance, by one of two routes:

    * the quantile form ``W₁(w, r) = ∫₀¹ |Q_w(u) - Q_r(u)| du`` (Vallender 1973): with ``m``
      window and ``n`` reference values both quantile functions are steps on the merged grid
      ``{i/m} ∪ {j/n}``, so ``W₁`` is one sort, one gather and one dot product, the grid laid
      out once (for the full window);
    * between two rounds of a full window, the triangle inequality: the window ``w'`` is ``w``
      with its oldest ``q`` values ``R`` replaced by ``q`` new ones ``A``; keeping the common
      values in place and matching ``A`` to ``R`` in sorted order is a coupling, so
      ``W₁(w', w) ≤ Σ|A₍ᵢ₎ - R₍ᵢ₎| / m`` and ``W₁(w', r) ≤ W₁(w, r) + Σ|A₍ᵢ₎ - R₍ᵢ₎| / m``: two
      sorts of ``q`` values. The bound is carried from round to round and recomputed by the
      quantile form when it no longer decides.

    It says ``True`` only when the bound is below the minimum by far more than the rounding error
    of any of these sums (a relative ``1e-9`` and ``1e-9`` of the values' magnitude per round,
    against ``~1e-13``; sums of non-negative terms are accurate relative to their value), so
    the monitor raises and records exactly what it would without it; otherwise the full effect
    is computed as before. Booleans: the true count gives the rate exactly. Categories: the
    total variation from the window's running counts (in another summation order, so with the
    same margin). Embeddings, and a continuous window still filling, have no pre-check.
    """

    __slots__ = ("_at", "_bound", "_config", "_grid", "_last", "_limit", "_plan", "_reference",
                 "_shares", "_span")

    def __init__(self, config: SignalConfig, reference: SignalReference) -> None:
        self._config = config
        self._reference = reference
        # (window length, window index, reference value, length) per cell of the merged grid
        self._grid: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], FloatArray,
                          FloatArray] | None = None
        self._last: FloatArray | None = None  # the window at the last round, oldest first
        self._at = 0  # the window's append count then
        self._bound = math.inf  # an upper bound of W₁(that window, reference)
        self._limit = math.nan
        self._span = 0.0
        # a batch's rounds: append count → (round, carried steps so far, window at the round)
        self._plan: dict[int, tuple[int, float, FloatArray]] = {}
        self._shares: dict[Any, float] = {}
        if isinstance(reference, CategoricalReference) and reference.n:
            n_ref = reference.n
            self._shares = {c: k / n_ref for c, k in reference.counts.items()}
        if isinstance(reference, ContinuousReference) and reference.n:
            scale = continuous_scale(config, reference)
            if scale > 0:
                self._limit = config.min_effect * scale * (1.0 - 1e-9)
                self._span = max(abs(float(reference.values[0])),
                                 abs(float(reference.values[-1])))

    def _quantile_w1(self, ws: FloatArray, r: FloatArray) -> float:
        """``W₁`` of a sorted window against the sorted reference, by the quantile form."""
        m, n = ws.size, r.size
        if self._grid is None or int(self._grid[0][0]) != m:
            # breakpoints of both step functions, in units of 1/(m·n): exact integers
            ends = np.union1d(np.arange(1, m + 1) * n, np.arange(1, n + 1) * m)
            self._grid = (np.array([m]), (ends - 1) // n, r[(ends - 1) // m],
                          np.diff(ends, prepend=0) / float(m * n))
        _, a, rb, lens = self._grid
        return float(np.abs(ws[a] - rb) @ lens)

    def plan(self, window: SignalWindow, upcoming: FloatArray, first: int, every: int) -> None:
        """Carried-bound steps for the test rounds a batch will reach, all at once.

        ``upcoming`` will be appended to the (full) ``window``, and test rounds fall after
        values ``first``, ``first + every``, …; between two rounds the ``every`` oldest values
        leave and ``every`` new ones come, so the rounds' steps are two sorts of a
        ``(rounds, every)`` array instead of two per round. :meth:`certainly_below` uses them for
        rounds after the first, whether or not the rounds between were tested.
        """
        self._plan = {}
        m = window.capacity
        if not self._limit > 0 or len(window) < m or not 0 < every < m:
            return
        at = np.arange(first, upcoming.size, every)
        if at.size < 4:  # the plan's dozen array operations pay off from a few rounds on
            return
        c = np.concatenate((window.floats(), upcoming))
        ends = at + (m + 1)  # the window at round r is c[ends[r] - m : ends[r]]
        cells = (ends[:-1] - m)[:, None] + np.arange(every)
        gone, came = c[cells], c[cells + m]
        gone.sort(axis=1)
        came.sort(axis=1)
        came -= gone  # each difference within one rounding of its value
        steps = np.abs(came, out=came).sum(axis=1) / m * (1.0 + 1e-9) + 1e-9 * self._span
        carried = np.concatenate(([0.0], steps.cumsum())).tolist()
        base = window.appended + 1
        for r, (pos, end) in enumerate(zip(at.tolist(), ends.tolist(), strict=True)):
            self._plan[base + pos] = (r, carried[r], c[end - m : end])

    def certainly_below(self, view: WindowView) -> bool:
        """True when the window's effect certainly does not reach the signal's minimum."""
        ref, window = self._reference, view.window
        if isinstance(ref, ContinuousReference):
            if not self._limit > 0 or len(window) < window.capacity:
                return False
            now, then = self._plan.get(window.appended), self._plan.get(self._at)
            if now is not None and then is not None and then[0] < now[0]:
                moved = now[1] - then[1]
                bound = self._bound + moved * (1.0 + 1e-9) + 1e-12 * now[1]
                if bound < self._limit:
                    self._last, self._at, self._bound = now[2], window.appended, bound
                    return True
            cur = view.floats()
            m, q = cur.size, window.appended - self._at
            last = self._last
            if last is not None and last.size == m and 0 < q < m:
                d, gone = cur[m - q :].copy(), last[:q].copy()
                d.sort()
                gone.sort()
                d -= gone  # each difference within one rounding of its value
                bound = self._bound + float(np.abs(d, out=d).sum()) / m * (1.0 + 1e-9) + (
                    1e-9 * self._span)
                if bound < self._limit:
                    self._last, self._at, self._bound = cur, window.appended, bound
                    return True
            ws = view.sorted()
            span = max(self._span, abs(float(ws[0])), abs(float(ws[-1])))
            self._last, self._at = cur, window.appended
            self._bound = self._quantile_w1(ws, ref.values) + 1e-9 * span
            return self._bound < self._limit
        if isinstance(ref, BooleanReference):
            config = self._config
            n = len(window)
            delta = window.count_nonzero() / n - ref.rate
            rel = abs(delta) / ref.rate if ref.rate > 0 else (math.inf if delta else 0.0)
            return not (abs(delta) >= config.min_effect and rel >= config.min_relative_effect)
        if self._shares and len(window):  # the total variation, summed in another order
            shares, n, tv = self._shares, len(window), 0.0
            counts = window.live_category_counts()
            for c, k in counts.items():
                tv += abs(k / n - shares.get(c, 0.0))
            for c, share in shares.items():
                if c not in counts:
                    tv += share
            return 0.5 * tv + 1e-9 < self._config.min_effect
        return False


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
