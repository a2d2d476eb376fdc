"""Two-sample Kolmogorov-Smirnov test of the window against the reference.

``D = sup_x |F_w(x) - F_r(x)|`` (Kolmogorov 1933; Smirnov 1948), in [0, 1]. The p-value is the
one scipy's ``ks_2samp(method="asymp")`` gives, ``kstwo.sf(D, round(wn/(w+n)))``: distribution-free
under no drift for continuous data and conservative with ties. It raises when ``p ≤ α`` (the
pair's budgeted level) and the signal's Wasserstein effect reaches its minimum effect.
"""

from __future__ import annotations

from typing import Any

from driftscope_llm.services.drift.detector import DetectorContext, Evaluation, WindowDetector
from driftscope_llm.services.drift.effects import WindowView
from driftscope_llm.services.drift.reference import ContinuousReference
from driftscope_llm.services.drift.registry import register_detector
from driftscope_llm.services.drift.settings import SignalKind
from driftscope_llm.services.drift.stats import ks_critical, ks_pvalue

__all__ = ["KolmogorovSmirnov"]


@register_detector("ks", SignalKind.CONTINUOUS)
class KolmogorovSmirnov(WindowDetector):
    """Two-sample KS test (module docstring)."""

    @classmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        ref = ctx.reference
        assert isinstance(ref, ContinuousReference)
        return {"disabled": None if ref.n >= 1 else "empty_reference", "alpha": ctx.budget.alpha}

    def evaluate(self, view: WindowView) -> Evaluation | None:
        ref = self.ctx.reference
        assert isinstance(ref, ContinuousReference)
        if self.calibration["disabled"] is not None:
            return None
        alpha = float(self.calibration["alpha"])
        d = view.merged().ks
        p = ks_pvalue(d, len(view), ref.n, alpha)
        return Evaluation(d, ks_critical(alpha, len(view), ref.n), p, p <= alpha)
