"""Two-sided Page-Hinkley test on winsorised raw values (mean shifts in signal units).

The Page-Hinkley statistic (Page 1954; Hinkley 1971) with tolerance ``δ`` and threshold ``λ``:
``m_T = Σ (x_t - μ - δ)``, alarm when ``m_T - min_{t≤T} m_t ≥ λ`` (and mirrored for decreases),
which is a CUSUM on ``x - μ``. Here ``μ`` is the reference mean rather than the running mean of
the monitored stream: a running mean absorbs the very drift it should detect, and with a
reference at hand it only adds noise. Unlike :mod:`.cusum` (ranks) this detector watches the
*mean* in signal units, so it sees a few extreme values that ranks cap (e.g. latency outliers).

* Values are clipped to the reference's ``winsor_quantile`` and ``1 - winsor_quantile`` quantiles
  before use, so the null law of the increments (the clipped reference) has bounded support and
  the Brook-Evans calibration of ``λ`` is not at the mercy of one unseen extreme.
* ``δ`` is the minimum effect in signal units (``min_effect`` × reference std, × |reference
  mean|, or as is); both are expressed in units of the clipped reference's std.
* ``λ`` is calibrated by the Brook-Evans chain on the clipped, standardised reference values,
  averaging the false-alarm rate over Bayesian-bootstrap draws of that law
  (:func:`driftscope_llm.services.drift.sequential.calibrate_sides`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftscope_llm.services.drift.detector import DetectorContext, Finding
from driftscope_llm.services.drift.effects import continuous_scale
from driftscope_llm.services.drift.reference import ContinuousReference
from driftscope_llm.services.drift.registry import register_detector
from driftscope_llm.services.drift.sequential import (
    FloatArray,
    IntArray,
    TwoSidedCusum,
    calibrate_sides,
)
from driftscope_llm.services.drift.settings import SignalKind

__all__ = ["PageHinkley"]


@register_detector("page_hinkley", SignalKind.CONTINUOUS)
class PageHinkley(TwoSidedCusum):
    """Two-sided Page-Hinkley on winsorised raw values (module docstring)."""

    @classmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        ref = ctx.reference
        assert isinstance(ref, ContinuousReference)
        v = ref.values
        scale = continuous_scale(ctx.config, ref)
        if v.size < 2 or scale <= 0:
            return {"disabled": "degenerate_reference"}
        q = ctx.settings.winsor_quantile
        lo, hi = (float(x) for x in np.quantile(v, [q, 1.0 - q]))
        c = np.clip(v, lo, hi)
        mu, sd = float(c.mean()), float(c.std())
        if not sd > 0:
            return {"disabled": "degenerate_reference"}
        k = ctx.config.min_effect * scale / sd
        u = (c - mu) / sd
        h_up, h_down = calibrate_sides(ctx, u, k, k)
        return {"disabled": None, "k_up": k, "k_down": k, "h_up": h_up, "h_down": h_down,
                "clip_low": lo, "clip_high": hi, "mu": mu, "sd": sd}

    def setup_score(self) -> None:
        c = self.calibration
        if self.disabled is not None:
            return
        self._lo, self._hi = float(c["clip_low"]), float(c["clip_high"])
        self._mu, self._sd = float(c["mu"]), float(c["sd"])
        ref = self.ctx.reference
        assert isinstance(ref, ContinuousReference)
        self._mean = ref.mean
        self._scale = continuous_scale(self.ctx.config, ref)

    def score(self, x: float) -> float:
        if x < self._lo:
            x = self._lo
        elif x > self._hi:
            x = self._hi
        return (x - self._mu) / self._sd

    def scores_batch(self, values: FloatArray, indices: IntArray) -> FloatArray:
        z: FloatArray = (np.clip(values, self._lo, self._hi) - self._mu) / self._sd
        return z

    def update(self, value: Any, index: int) -> Finding | None:
        # TwoSidedCusum.update with the score inlined: this runs for every value.
        if self.disabled is not None:
            return None
        x = self._lo if value < self._lo else self._hi if value > self._hi else value
        z = (x - self._mu) / self._sd
        return self._advance(z - self._kp, -z - self._kn, value, index)

    @property
    def effect_unit(self) -> str:
        return f"mean_shift/{self.ctx.config.effect_unit.value}"

    def effect(self, segment_mean: float, side: int) -> tuple[float, bool]:
        delta = segment_mean - self._mean
        size = abs(delta) / self._scale
        return size, delta * side > 0 and size >= self.ctx.config.min_effect
