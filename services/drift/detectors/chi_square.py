"""Category distribution test of a categorical signal, window vs reference.

The statistic is Pearson's ``X²`` over the categories seen in either sample (scipy's
chi2_contingency without correction). Rare categories make its χ² tail unreliable at small
levels, so the p-value is exact: the smallest per-category two-sided Fisher test (category vs the
rest), Bonferroni-corrected (:func:`driftscope_llm.services.drift.stats.category_test`). A category
never seen in the reference is a category like any other (reference count 0). It raises when ``p ≤
α`` and the total variation distance reaches the minimum effect; ``focus`` is the category that
grew most.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from driftscope_llm.services.drift.detector import DetectorContext, Evaluation, WindowDetector
from driftscope_llm.services.drift.effects import WindowView
from driftscope_llm.services.drift.reference import CategoricalReference
from driftscope_llm.services.drift.registry import register_detector
from driftscope_llm.services.drift.settings import SignalKind
from driftscope_llm.services.drift.stats import category_test, chi2_isf

__all__ = ["ChiSquare"]


@register_detector("chi_square", SignalKind.CATEGORICAL)
class ChiSquare(WindowDetector):
    """Category distribution test with exact p-values (module docstring)."""

    @classmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        ref = ctx.reference
        assert isinstance(ref, CategoricalReference)
        return {"disabled": None if ref.n >= 1 else "empty_reference", "alpha": ctx.budget.alpha}

    def evaluate(self, view: WindowView) -> Evaluation | None:
        ref = self.ctx.reference
        assert isinstance(ref, CategoricalReference)
        if self.calibration["disabled"] is not None:
            return None
        alpha = float(self.calibration["alpha"])
        win = Counter(view.window.values())
        cats = sorted(set(ref.counts) | set(win))
        r = np.array([ref.counts.get(c, 0) for c in cats], dtype=np.float64)
        w = np.array([win.get(c, 0) for c in cats], dtype=np.float64)
        stat, p, df = category_test(r, w)
        return Evaluation(stat, chi2_isf(alpha, max(1, df)), p, p <= alpha, {"df": df})
