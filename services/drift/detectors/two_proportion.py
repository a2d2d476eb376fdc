"""Two-proportion test of a boolean signal's rate, window vs reference.

The statistic is Pearson's ``X²`` of the 2×2 table (window, reference) × (true, false), without
continuity correction — the square of the pooled two-proportion z statistic. Its χ² law is poor in
the far tail for rare events (a 2 % refusal rate in a 1000-event window is 20 expected events),
which is where the budgeted level lives, so the p-value is Fisher's exact conditional test
(two-sided, as scipy.stats.fisher_exact): valid at any level. It raises when ``p ≤ α`` and the
rate changed by at least ``min_effect`` absolute *and* ``min_relative_effect`` relative.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftscope_llm.services.drift.detector import DetectorContext, Evaluation, WindowDetector
from driftscope_llm.services.drift.effects import WindowView
from driftscope_llm.services.drift.reference import BooleanReference
from driftscope_llm.services.drift.registry import register_detector
from driftscope_llm.services.drift.settings import SignalKind
from driftscope_llm.services.drift.stats import chi2_isf, fisher_two_sided, pearson_chi2

__all__ = ["TwoProportion"]


@register_detector("two_proportion", SignalKind.BOOLEAN)
class TwoProportion(WindowDetector):
    """Two-proportion test with an exact p-value (module docstring)."""

    @classmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        ref = ctx.reference
        assert isinstance(ref, BooleanReference)
        return {"disabled": None if ref.n >= 1 else "empty_reference", "alpha": ctx.budget.alpha}

    def evaluate(self, view: WindowView) -> Evaluation | None:
        ref = self.ctx.reference
        assert isinstance(ref, BooleanReference)
        if self.calibration["disabled"] is not None:
            return None
        alpha = float(self.calibration["alpha"])
        w = view.floats()
        x_w, n_w = int(w.sum()), int(w.size)
        table = np.array([[x_w, n_w - x_w], [ref.n_true, ref.n - ref.n_true]], dtype=np.float64)
        stat = pearson_chi2(table) if (table.sum(axis=0) > 0).all() else 0.0
        p = fisher_two_sided(x_w, n_w - x_w, ref.n_true, ref.n - ref.n_true)
        return Evaluation(stat, chi2_isf(alpha, 1), p, p <= alpha)
