"""Embedding drift: shares of the reference's topic clusters, window vs reference.

Each embedding is assigned, on arrival, to the nearest of the ``embedding_clusters`` k-means
centroids fitted on the reference's fit half; the held-out half's cluster counts are the
reference. The test is the categorical one
(:func:`driftscope_llm.services.drift.stats.category_test`: Pearson
``X²`` statistic, exact Bonferroni-Fisher p-value), cost ``O(w)`` per test after ``O(k d)`` per
embedding. It says *which* topics moved: ``focus`` is the cluster that grew most, and the
window summary lists every cluster's share next to the reference's.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from driftscope_llm.services.drift.detector import DetectorContext, Evaluation, WindowDetector
from driftscope_llm.services.drift.effects import WindowView
from driftscope_llm.services.drift.embedding_space import EmbeddingReference
from driftscope_llm.services.drift.registry import register_detector
from driftscope_llm.services.drift.settings import SignalKind
from driftscope_llm.services.drift.stats import category_test, chi2_isf

__all__ = ["EmbeddingClusters"]


@register_detector("embedding_clusters", SignalKind.EMBEDDING)
class EmbeddingClusters(WindowDetector):
    """Topic-cluster share test (module docstring)."""

    @classmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        ref = ctx.reference
        assert isinstance(ref, EmbeddingReference)
        ok = int(np.count_nonzero(ref.cluster_counts)) >= 2
        return {"disabled": None if ok else "single_cluster", "alpha": ctx.budget.alpha}

    def evaluate(self, view: WindowView) -> Evaluation | None:
        ref = self.ctx.reference
        assert isinstance(ref, EmbeddingReference)
        if self.calibration["disabled"] is not None:
            return None
        alpha = float(self.calibration["alpha"])
        counts = Counter(int(item[1]) for item in view.window.values())
        k = ref.cluster_counts.size
        w = np.array([counts.get(i, 0) for i in range(k)], dtype=np.float64)
        stat, p, df = category_test(ref.cluster_counts.astype(np.float64), w)
        return Evaluation(stat, chi2_isf(alpha, max(1, df)), p, p <= alpha,
                          {"df": df, "reference_shares": ref.summary()["cluster_shares"]})
