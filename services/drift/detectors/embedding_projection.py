"""Embedding drift: Hotelling's T² on the reference's principal directions (linear time).

Each embedding is projected, on arrival, onto the top ``embedding_components`` principal
directions of the reference's *fit* half and whitened by their scales (see
:mod:`driftscope_llm.services.drift.embedding_space`); a window test then costs ``O(w · r)``. The
statistic is Hotelling's two-sample ``T² = m (ȳ_w - ȳ_r)ᵀ S⁻¹ (ȳ_w - ȳ_r)``, ``m = wn/(w+n)``, with
``ȳ_r`` and
``S`` the mean and covariance of the *held-out* half's coordinates. Under no drift
``T² (ν-r+1)/(ν r)`` is approximately ``F(r, ν-r+1)``, ``ν = n - 1`` (Hotelling 1931). A topic
shift (a change of the mixture of topics) moves the mean embedding and therefore ``T²``.

Alarms need ``p ≤ α``, the topic-cluster effect (share of outputs that moved between the
reference's clusters) at its minimum, and a permutation test of the whitened squared mean
distance (window vs held-out half, exchangeable under no drift given the fit half) to confirm.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import f as f_dist

from driftscope_llm.services.drift.codec import decode_array, encode_array
from driftscope_llm.services.drift.detector import DetectorContext, Evaluation, WindowDetector
from driftscope_llm.services.drift.effects import WindowView
from driftscope_llm.services.drift.embedding_space import EmbeddingReference
from driftscope_llm.services.drift.permutation import confirm
from driftscope_llm.services.drift.registry import register_detector
from driftscope_llm.services.drift.settings import SignalKind

__all__ = ["EmbeddingProjection"]

FloatArray = npt.NDArray[np.float64]


@lru_cache(maxsize=256)
def _t2_critical(alpha: float, r: int, nu: int) -> float:
    return float(f_dist.isf(alpha, r, nu - r + 1)) * nu * r / (nu - r + 1)


@register_detector("embedding_projection", SignalKind.EMBEDDING)
class EmbeddingProjection(WindowDetector):
    """Hotelling T² on reference principal directions (module docstring)."""

    @classmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        ref = ctx.reference
        assert isinstance(ref, EmbeddingReference)
        y = ref.projections
        n, r = y.shape
        if n < r + 2:
            return {"disabled": "too_few_reference_embeddings", "alpha": ctx.budget.alpha}
        cov = np.cov(y, rowvar=False).reshape(r, r)
        cov += np.eye(r) * 1e-9 * max(1e-300, float(np.trace(cov)) / r)
        return {"disabled": None, "alpha": ctx.budget.alpha,
                "mean": encode_array(y.mean(axis=0)), "inv_cov": encode_array(np.linalg.inv(cov))}

    def setup(self) -> None:
        c = self.calibration
        if c["disabled"] is None:
            self._mean = decode_array(c["mean"])
            self._inv = decode_array(c["inv_cov"])

    def evaluate(self, view: WindowView) -> Evaluation | None:
        ref = self.ctx.reference
        assert isinstance(ref, EmbeddingReference)
        c = self.calibration
        if c["disabled"] is not None:
            return None
        alpha = float(c["alpha"])
        yw = np.stack([item[0] for item in view.window.values()])
        w, (n, r) = yw.shape[0], ref.projections.shape
        delta = yw.mean(axis=0) - self._mean
        t2 = float(w * n / (w + n) * delta @ self._inv @ delta)
        nu = n - 1
        p = float(f_dist.sf(t2 * (nu - r + 1) / (nu * r), r, nu - r + 1))
        return Evaluation(t2, _t2_critical(alpha, r, nu), p, p <= alpha, {"components": r})

    def confirm(self, view: WindowView, evaluation: Evaluation, index: int) -> float | None:
        ref = self.ctx.reference
        assert isinstance(ref, EmbeddingReference)
        yw = np.stack([item[0] for item in view.window.values()])
        w, n = yw.shape[0], ref.n
        pooled = np.vstack((yw, ref.projections))
        total = pooled.sum(axis=0)

        def batch(masks: npt.NDArray[np.bool_]) -> FloatArray:
            sw = masks.astype(np.float64) @ pooled
            d = sw / w - (total[None, :] - sw) / n
            out: FloatArray = np.einsum("ij,ij->i", d, d)
            return out

        gap = yw.mean(axis=0) - ref.projections.mean(axis=0)
        return confirm(float(gap @ gap), batch, pooled.shape[0], w,
                       self.ctx.settings.permutations, float(self.calibration["alpha"]),
                       self.ctx.seed, index)
