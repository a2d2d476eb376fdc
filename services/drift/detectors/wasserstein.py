"""Wasserstein-1 distance between window and reference, with a calibrated threshold.

``W1 = ∫ |F_w(x) - F_r(x)| dx`` in signal units (scipy.stats.wasserstein_distance). It raises
when ``W1`` reaches ``max(t_α, min_effect × unit)``, where ``t_α`` is the Borell-TIS null
threshold (:class:`driftscope_llm.services.drift.calibration.WassersteinNull`) at the pair's
budgeted level, and a permutation test of the same statistic confirms
(:mod:`driftscope_llm.services.drift.permutation`). The reported p-value is the Borell-TIS upper
bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftscope_llm.services.drift.calibration import WassersteinNull, wasserstein_null
from driftscope_llm.services.drift.detector import DetectorContext, Evaluation, WindowDetector
from driftscope_llm.services.drift.effects import WindowView, continuous_scale
from driftscope_llm.services.drift.permutation import BoolArray, FloatArray, confirm
from driftscope_llm.services.drift.reference import ContinuousReference
from driftscope_llm.services.drift.registry import register_detector
from driftscope_llm.services.drift.settings import SignalKind

__all__ = ["Wasserstein", "permuted_w1"]


def permuted_w1(pooled_sorted: FloatArray, masks: BoolArray) -> FloatArray:
    """W1 between the masked and unmasked parts of a sorted pooled sample, per mask row."""
    n_w = masks[0].sum()
    n_r = masks.shape[1] - n_w
    gaps = np.diff(pooled_sorted)
    fw = np.cumsum(masks, axis=1)[:, :-1] / n_w
    fr = np.cumsum(~masks, axis=1)[:, :-1] / n_r
    out: FloatArray = np.abs(fw - fr) @ gaps
    return out


@register_detector("wasserstein", SignalKind.CONTINUOUS)
class Wasserstein(WindowDetector):
    """Wasserstein-1 test with a calibrated threshold (module docstring)."""

    @classmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        ref = ctx.reference
        assert isinstance(ref, ContinuousReference)
        scale = continuous_scale(ctx.config, ref)
        disabled = None if ref.n >= 2 and scale > 0 else "degenerate_reference"
        return {"disabled": disabled, "alpha": ctx.budget.alpha, "scale": scale,
                "null": wasserstein_null(ref.values).to_dict()}

    def evaluate(self, view: WindowView) -> Evaluation | None:
        ref = self.ctx.reference
        assert isinstance(ref, ContinuousReference)
        c = self.calibration
        if c["disabled"] is not None:
            return None
        alpha, scale = float(c["alpha"]), float(c["scale"])
        null = WassersteinNull.from_dict(c["null"])
        dist = view.merged().w1
        thr = max(null.threshold(len(view), ref.n, alpha), self.ctx.config.min_effect * scale)
        return Evaluation(dist, thr, null.p_value(dist, len(view), ref.n), dist >= thr)

    def confirm(self, view: WindowView, evaluation: Evaluation, index: int) -> float | None:
        ref = self.ctx.reference
        assert isinstance(ref, ContinuousReference)
        pooled = np.sort(np.concatenate((view.floats(), ref.values)))
        return confirm(evaluation.statistic, lambda m: permuted_w1(pooled, m), pooled.size,
                       len(view), self.ctx.settings.permutations, float(self.calibration["alpha"]),
                       self.ctx.seed, index)
