"""Population stability index on reference-quantile bins, with a χ² null threshold.

``PSI = Σ_b (p_w(b) - p_r(b)) ln(p_w(b) / p_r(b))`` over ``psi_bins`` bins cut at reference
quantiles (fewer when ties merge cuts), proportions smoothed by half a count per bin. PSI is
Jeffreys' symmetrised Kullback-Leibler divergence; to second order it is Pearson's χ²
divergence, so under no drift ``PSI / (1/w + 1/n)`` is asymptotically ``χ²(B - 1)`` — the same
holds with quantile bins because a reference quantile bin's true mass has the sampling variance
of a proportion. The usual "0.1 / 0.25" rules of thumb ignore sample size; here the threshold is
``χ²_{B-1}(1-α) · (1/w + 1/n)`` at the pair's budgeted level, the signal's minimum effect must be
reached, and a permutation test confirms (:mod:`driftscope_llm.services.drift.permutation`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2

from driftscope_llm.services.drift.detector import DetectorContext, Evaluation, WindowDetector
from driftscope_llm.services.drift.effects import WindowView
from driftscope_llm.services.drift.permutation import confirm
from driftscope_llm.services.drift.reference import ContinuousReference
from driftscope_llm.services.drift.registry import register_detector
from driftscope_llm.services.drift.settings import SignalKind
from driftscope_llm.services.drift.stats import chi2_isf

__all__ = ["PopulationStabilityIndex", "psi"]

FloatArray = npt.NDArray[np.float64]


def psi(win_counts: FloatArray, ref_counts: FloatArray) -> FloatArray:
    """PSI of count rows (``win_counts`` may be 2-D: a row per sample) vs reference counts."""
    k = ref_counts.shape[-1]
    pw = (win_counts + 0.5) / (win_counts.sum(axis=-1, keepdims=True) + 0.5 * k)
    pr = (ref_counts + 0.5) / (ref_counts.sum(axis=-1, keepdims=True) + 0.5 * k)
    out: FloatArray = np.sum((pw - pr) * np.log(pw / pr), axis=-1)
    return out


@register_detector("psi", SignalKind.CONTINUOUS)
class PopulationStabilityIndex(WindowDetector):
    """PSI with a calibrated χ² threshold (module docstring)."""

    @classmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        ref = ctx.reference
        assert isinstance(ref, ContinuousReference)
        k = ctx.settings.psi_bins
        edges = np.unique(np.quantile(ref.values, np.arange(1, k) / k)) if ref.n else np.zeros(0)
        disabled = None if edges.size >= 1 and ref.n >= 2 else "degenerate_reference"
        return {"disabled": disabled, "alpha": ctx.budget.alpha, "edges": edges.tolist()}

    def setup(self) -> None:
        ref = self.ctx.reference
        assert isinstance(ref, ContinuousReference)
        if self.calibration["disabled"] is not None:
            return
        self._edges = np.asarray(self.calibration["edges"], dtype=np.float64)
        self._k = self._edges.size + 1
        self._ref_bins = np.searchsorted(self._edges, ref.values, side="right")
        self._ref_counts = np.bincount(self._ref_bins, minlength=self._k).astype(np.float64)

    def evaluate(self, view: WindowView) -> Evaluation | None:
        if self.calibration["disabled"] is not None:
            return None
        alpha = float(self.calibration["alpha"])
        counts = self._counts(view)
        inflation = 1.0 / len(view) + 1.0 / self._ref_bins.size
        stat = float(psi(counts, self._ref_counts))
        thr = chi2_isf(alpha, self._k - 1) * inflation
        p = float(chi2.sf(stat / inflation, self._k - 1))
        return Evaluation(stat, thr, p, stat >= thr, {"bins": self._k})

    def _bins(self, view: WindowView) -> npt.NDArray[np.int64]:
        out: npt.NDArray[np.int64] = np.searchsorted(self._edges, view.floats(), side="right")
        return out

    def _counts(self, view: WindowView) -> FloatArray:
        return np.bincount(self._bins(view), minlength=self._k).astype(np.float64)

    def confirm(self, view: WindowView, evaluation: Evaluation, index: int) -> float | None:
        pooled = np.concatenate((self._bins(view), self._ref_bins))
        onehot = np.eye(self._k)[pooled]
        total = onehot.sum(axis=0)

        def batch(masks: npt.NDArray[np.bool_]) -> FloatArray:
            cw = masks.astype(np.float64) @ onehot
            return psi(cw, total[None, :] - cw)

        return confirm(evaluation.statistic, batch, pooled.size, len(view),
                       self.ctx.settings.permutations, float(self.calibration["alpha"]),
                       self.ctx.seed, index)
