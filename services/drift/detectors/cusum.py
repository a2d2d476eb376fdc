"""Two-sided CUSUM on reference normal scores (a rank-based, distribution-free CUSUM).

Each value ``x`` gets its rank position ``j ∈ {0, …, n}`` among the ``n`` reference values (the
number of reference values below it; ties with reference values are broken at random, the
randomised probability integral transform) and the score ``z = Φ⁻¹((j + ½)/(n + 1))``. Under no
drift a new value is exchangeable with the reference, so ``j`` is *exactly* uniform on
``{0, …, n}`` whatever the signal's distribution — heavy-tailed latency, bounded confidence,
integer lengths, a share that is mostly zero — and ``z`` is close to N(0, 1) with bounded steps.
Page's CUSUM then runs on ``z`` (see :mod:`driftscope_llm.services.drift.sequential`).

* ``k⁺``/``k⁻`` are the mean score shift that a change of exactly the minimum effect (shift by
  ``min_effect`` × reference std, or scale by ``1 ± min_effect``, ...) produces on the reference:
  the statistic drifts down under any smaller change.
* ``h`` is calibrated by the Brook-Evans chain on the null law of ``z``: the ``n + 1`` scores
  with the probabilities a new value has of falling between consecutive reference values.
  Those are uniform spacings, Dirichlet(1, …, 1), unknown for a given reference; the false-alarm
  rate is averaged over draws of them
  (:func:`driftscope_llm.services.drift.sequential.calibrate_sides`), which accounts for the
  reference's sampling error (its mean is off by ``1/√n`` in score units).
* Tie-breaking draws come from a hash of (detector seed, event index): restored monitors draw
  the same ones.
* A constant reference (zero std) leaves nothing to rank against: the detector stays off.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from driftscope_llm.services.drift.detector import DetectorContext, Finding
from driftscope_llm.services.drift.effects import continuous_scale
from driftscope_llm.services.drift.reference import ContinuousReference
from driftscope_llm.services.drift.registry import register_detector
from driftscope_llm.services.drift.sequential import TwoSidedCusum, calibrate_sides
from driftscope_llm.services.drift.settings import EffectUnit, SignalConfig, SignalKind

__all__ = ["NormalScoreCusum", "shifted", "uniform_hash", "uniform_hashes"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_MASK = (1 << 64) - 1


def uniform_hash(seed: int, index: int) -> float:
    """A uniform number in [0, 1) from (seed, index), SplitMix64's mixer (Steele et al. 2014)."""
    z = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


def uniform_hashes(seed: int, indices: IntArray) -> FloatArray:
    """:func:`uniform_hash` of many (non-negative) indices: the same numbers, bit for bit
    (uint64 arithmetic wraps modulo 2⁶⁴ as the masked Python integers do)."""
    z = indices.astype(np.uint64)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z += np.uint64((seed * 0x9E3779B97F4A7C15 + 0x94D049BB133111EB) & _MASK)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    z >>= np.uint64(11)
    out: FloatArray = z.astype(np.float64)
    out *= 1.0 / float(1 << 53)  # a power of two: exactly the scalar division
    return out


def shifted(config: SignalConfig, ref: ContinuousReference, values: FloatArray,
            side: int) -> FloatArray:
    """``values`` moved by exactly the minimum effect, up (``side=1``) or down (``-1``)."""
    if config.effect_unit is EffectUnit.RELATIVE:
        return values * (1.0 + side * config.min_effect)
    return values + side * config.min_effect * continuous_scale(config, ref)


def _mean_score(v: FloatArray, table: FloatArray, x: FloatArray) -> float:
    """Mean score of ``x``, ties averaged over their rank positions (the randomisation's mean)."""
    lo = np.searchsorted(v, x, side="left")
    hi = np.searchsorted(v, x, side="right")
    csum = np.concatenate(([0.0], np.cumsum(table)))
    return float(np.mean((csum[hi + 1] - csum[lo]) / (hi - lo + 1)))


@register_detector("cusum", SignalKind.CONTINUOUS)
class NormalScoreCusum(TwoSidedCusum):
    """Two-sided CUSUM on reference normal scores (module docstring)."""

    @classmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        ref = ctx.reference
        assert isinstance(ref, ContinuousReference)
        v = ref.values
        n = v.size
        if n < 2 or not ref.std > 0 or continuous_scale(ctx.config, ref) <= 0:
            return {"disabled": "degenerate_reference"}
        table: FloatArray = ndtri((np.arange(n + 1) + 0.5) / (n + 1))
        base = _mean_score(v, table, v)
        k_up = _mean_score(v, table, shifted(ctx.config, ref, v, 1)) - base
        k_down = base - _mean_score(v, table, shifted(ctx.config, ref, v, -1))
        k_up_opt = k_up if k_up > 1e-3 else None
        k_down_opt = k_down if k_down > 1e-3 else None
        h_up, h_down = calibrate_sides(ctx, table, k_up_opt, k_down_opt)
        return {"disabled": None, "k_up": k_up_opt, "k_down": k_down_opt, "h_up": h_up,
                "h_down": h_down}

    def setup_score(self) -> None:
        ref = self.ctx.reference
        assert isinstance(ref, ContinuousReference)
        if self.disabled is not None:
            return
        self._ref_array = ref.values
        self._ref = ref.values.tolist()
        n = len(self._ref)
        self._table_array: FloatArray = ndtri((np.arange(n + 1) + 0.5) / (n + 1))
        self._table = self._table_array.tolist()
        self._mean = ref.mean
        self._scale = continuous_scale(self.ctx.config, ref)
        self._seed = self.ctx.seed

    def increments(self, x: float, index: int) -> tuple[float, float]:
        z = self._score(x, index)
        return z - self._kp, -z - self._kn

    def _score(self, x: float, index: int) -> float:
        r = self._ref
        lo = bisect_left(r, x)
        hi = bisect_right(r, x)
        if hi > lo:  # tied with reference values: a random position among the ties
            lo += int(uniform_hash(self._seed, index) * (hi - lo + 1))
        z: float = self._table[lo]
        return z

    def scores_batch(self, values: FloatArray, indices: IntArray) -> FloatArray:
        """:meth:`_score` of many values: rank positions by one binary search over the whole
        array, ties broken by the same hashes :meth:`_score` draws."""
        r = self._ref_array
        lo = r.searchsorted(values, side="left")
        # a value equal to the reference value at its left position is tied (lo < n there)
        tied = (r.take(lo, mode="clip") == values).nonzero()[0]
        if tied.size > 6:
            hi = r.searchsorted(values[tied], side="right")
            span = hi - lo[tied] + 1
            lo[tied] += (uniform_hashes(self._seed, indices[tied]) * span).astype(np.int64)
        elif tied.size:  # a few ties: the scalar draw is cheaper than the array one
            ref, seed = self._ref, self._seed
            for j in tied.tolist():
                x, low = float(values[j]), int(lo[j])
                lo[j] = low + int(uniform_hash(seed, int(indices[j]))
                                  * (bisect_right(ref, x) - low + 1))
        z: FloatArray = self._table_array[lo]
        return z

    def update(self, value: Any, index: int) -> Finding | None:
        # TwoSidedCusum.update with the score inlined: this runs for every value.
        if self.disabled is not None:
            return None
        r = self._ref
        lo = bisect_left(r, value)
        hi = bisect_right(r, value)
        if hi > lo:
            lo += int(uniform_hash(self._seed, index) * (hi - lo + 1))
        z = self._table[lo]
        return self._advance(z - self._kp, -z - self._kn, value, index)

    @property
    def effect_unit(self) -> str:
        return f"mean_shift/{self.ctx.config.effect_unit.value}"

    def effect(self, segment_mean: float, side: int) -> tuple[float, bool]:
        delta = segment_mean - self._mean
        size = abs(delta) / self._scale
        return size, delta * side > 0 and size >= self.ctx.config.min_effect
