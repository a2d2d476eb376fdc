"""Two-sided Bernoulli CUSUM for rates, on an integer lattice (Reynolds & Stoumbos 1999).

The Bernoulli CUSUM adds, per event, the log-likelihood ratio of a changed rate ``p₁`` against
the reference rate ``p₀``: a step of one sign for a true value and of the other for a false one.
Reynolds & Stoumbos choose ``p₁`` so that the two steps are in an integer ratio; the statistic
then lives on the integers and its run length is an exact finite Markov chain (no
discretisation error, unlike Brook-Evans on a grid, which fails when one step is smaller than a
cell). Here:

* upward side: ``S⁺ ← max(0, S⁺ + a)`` on a true value, ``max(0, S⁺ - b)`` on a false one;
* downward side: ``S⁻ ← max(0, S⁻ + c)`` on a false value, ``max(0, S⁻ - d)`` on a true one;

with small integers (one of each pair is 1). The upward side's expected step is zero at the
rate ``b/(a+b)``, the downward side's at ``c/(c+d)``; they are chosen to lie on or beyond the
minimum-effect boundaries ``p_b = p₀ ± max(min_effect, min_relative_effect · p₀)``, so the
statistic drifts down under any smaller change (the CUSUM's "k at the minimum effect"); each side
is the likelihood-ratio CUSUM of some ``p₁`` beyond its boundary. ``p₀`` is the reference rate with
half an event added either way (``(k + ½)/(n + 1)``). The integer threshold ``H`` is the smallest
whose exact ARL (a banded linear solve), averaged over the binomial error of ``p₀`` (3-point
Gauss-Hermite), reaches twice the pair's budgeted ARL. A side whose boundary falls outside
(0, 1) is off. Statistic and threshold are in lattice steps.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.linalg import solve_banded

from driftscope_llm.services.drift.calibration import gauss_hermite
from driftscope_llm.services.drift.detector import DetectorContext
from driftscope_llm.services.drift.reference import BooleanReference
from driftscope_llm.services.drift.registry import register_detector
from driftscope_llm.services.drift.sequential import FloatArray, IntArray, TwoSidedCusum
from driftscope_llm.services.drift.settings import SignalKind
from driftscope_llm.services.errors import DetectorError

__all__ = ["BernoulliCusum", "lattice_arl", "lattice_steps", "lattice_threshold"]


def lattice_arl(up: int, down: int, p_up: float, h: int) -> float:
    """Exact ARL from 0 of ``S ← max(0, S + up)`` with probability ``p_up``, else
    ``max(0, S - down)``, until ``S ≥ h`` (states ``0 .. h-1``)."""
    if h < 1 or up < 1 or down < 1:
        raise DetectorError("lattice steps and threshold must be at least 1")
    if p_up <= 0:
        return math.inf
    if down >= h - 1:  # every down step returns to 0: ceil(h/up) up steps in a row
        r = -(-h // up)
        s = p_up
        return r if s >= 1 else (1.0 - s**r) / ((1.0 - s) * s**r)
    # (I - Q) E = 1 is banded: up steps above the diagonal, down steps below.
    upper = min(up, h - 1)
    ab = np.zeros((down + upper + 1, h))
    ab[upper, :] = 1.0  # the diagonal
    i = np.arange(h)
    jump, step = i + up, np.maximum(i - down, 0)
    inside = jump < h
    ab[upper + i[inside] - jump[inside], jump[inside]] -= p_up
    np.add.at(ab, (upper + i - step, step), -(1.0 - p_up))
    try:
        run = solve_banded((down, upper), ab, np.ones(h), check_finite=False)
    except (np.linalg.LinAlgError, ValueError):
        return math.inf
    value = float(run[0])
    return value if value > 0 and math.isfinite(value) else math.inf


@lru_cache(maxsize=256)
def lattice_threshold(up: int, down: int, p_ups: tuple[tuple[float, float], ...],
                      target: float) -> int:
    """Smallest ``H`` whose false-alarm rate, averaged over ``(p_up, weight)`` pairs, gives an
    ARL of at least ``target``."""

    def arl(h: int) -> float:
        rate = sum(w / lattice_arl(up, down, p, h) for p, w in p_ups)
        return math.inf if rate <= 0 else 1.0 / rate

    lo, hi = 0, max(up, down, 1)
    while arl(hi) < target:
        lo, hi = hi, hi * 2
        if hi > 1 << 20:
            raise DetectorError("Bernoulli CUSUM cannot reach the target run length")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if arl(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def lattice_steps(boundary: float, upward: bool) -> tuple[int, int]:
    """Integer ``(step on a true value, step on a false one)`` magnitudes whose zero-drift rate
    lies on or beyond ``boundary`` (above it for the upward side, below for the downward)."""
    odds = boundary / (1.0 - boundary)
    if upward:  # +a on true, -b on false: zero drift at b/(a+b) ≥ boundary
        return (max(1, math.floor(1.0 / odds)), 1) if odds <= 1 else (1, math.ceil(odds))
    # -d on true, +c on false: zero drift at c/(c+d) ≤ boundary
    return (math.ceil(1.0 / odds), 1) if odds <= 1 else (1, max(1, math.floor(odds)))


def _side(ctx: DetectorContext, p0: float, sd: float, boundary: float,
          upward: bool) -> dict[str, float] | None:
    if not 0.0 < boundary < 1.0:
        return None
    on_true, on_false = lattice_steps(boundary, upward)
    rates = [min(max(p0 + node * sd, 1e-12), 1 - 1e-12) for node, _ in gauss_hermite()]
    weights = [w for _, w in gauss_hermite()]
    if upward:  # the statistic rises on true values
        p_ups = tuple((q, w) for q, w in zip(rates, weights, strict=True))
        h = lattice_threshold(on_true, on_false, p_ups, 2.0 * ctx.budget.arl)
        steps = (float(on_true), -float(on_false))
    else:  # ... on false values
        p_ups = tuple((1.0 - q, w) for q, w in zip(rates, weights, strict=True))
        h = lattice_threshold(on_false, on_true, p_ups, 2.0 * ctx.budget.arl)
        steps = (-float(on_true), float(on_false))
    return {"on_true": steps[0], "on_false": steps[1], "h": float(h),
            "zero_drift_rate": on_false / (on_true + on_false)}


@register_detector("bernoulli_cusum", SignalKind.BOOLEAN)
class BernoulliCusum(TwoSidedCusum):
    """Two-sided integer-lattice Bernoulli CUSUM (module docstring)."""

    @classmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        ref = ctx.reference
        assert isinstance(ref, BooleanReference)
        if ref.n < 1:
            return {"disabled": "empty_reference"}
        p0 = (ref.n_true + 0.5) / (ref.n + 1.0)
        sd = math.sqrt(p0 * (1 - p0) / (ref.n + 1.0))
        d = max(ctx.config.min_effect, ctx.config.min_relative_effect * p0)
        up = _side(ctx, p0, sd, p0 + d, upward=True)
        down = _side(ctx, p0, sd, p0 - d, upward=False)
        return {"disabled": None, "p0": p0, "up": up, "down": down,
                "h_up": None if up is None else up["h"],
                "h_down": None if down is None else down["h"]}

    def setup_score(self) -> None:
        if self.disabled is not None:
            return
        c = self.calibration
        # (step if true, step if false) per side; an off side never moves.
        up, down = c["up"], c["down"]
        self._up_steps = (0.0, 0.0) if up is None else (up["on_true"], up["on_false"])
        self._dn_steps = (0.0, 0.0) if down is None else (down["on_true"], down["on_false"])
        ref = self.ctx.reference
        assert isinstance(ref, BooleanReference)
        self._rate = ref.rate
        self.lattice = all(float(x).is_integer() for x in (*self._up_steps, *self._dn_steps))

    def increments_batch(self, values: FloatArray, indices: IntArray) -> FloatArray:
        true = values != 0.0
        out = np.empty((2, values.size))
        out[0] = np.where(true, self._up_steps[0], self._up_steps[1])
        out[1] = np.where(true, self._dn_steps[0], self._dn_steps[1])
        return out

    def increments(self, x: float, index: int) -> tuple[float, float]:
        if x:
            return self._up_steps[0], self._dn_steps[0]
        return self._up_steps[1], self._dn_steps[1]

    @property
    def effect_unit(self) -> str:
        return "rate_difference"

    def effect(self, segment_mean: float, side: int) -> tuple[float, bool]:
        delta = segment_mean - self._rate
        rel = abs(delta) / self._rate if self._rate > 0 else math.inf
        passes = (delta * side > 0 and abs(delta) >= self.ctx.config.min_effect
                  and rel >= self.ctx.config.min_relative_effect)
        return abs(delta), passes
