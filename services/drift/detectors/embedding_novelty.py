"""Sequential detector of outputs unlike every reference topic (a new subject appearing).

The window tests on embeddings see a change of the mean embedding (within the reference's top
principal directions) or of the shares of the reference's topic clusters. A *new* topic taking a
share ``s`` of outputs can escape both: in a 384-d space its direction is nearly orthogonal to
the reference's principal directions, and its outputs spread over the clusters nearest to them.
What does change is how far outputs lie from their nearest reference topic.

Score: the *novelty* of an output, its squared distance to the nearest reference centroid
(:meth:`EmbeddingReference.novelty_of`). The held-out half of the reference (never used to fit
the centroids) gives ``n`` null novelty scores; an output is *novel* when its score exceeds the
``m``-th largest of them, ``m = ⌈q·(n+1)⌉`` with ``q`` = 2 %. Under no drift a new output is
exchangeable with the held-out ones, so it is novel with probability exactly ``p₀ = m/(n+1)``
(averaged over references; for one reference the probability is Beta(``m``, ``n+1-m``)
distributed, whose spread the calibration averages over). If a share ``s`` of outputs come from
a topic farther than that cut, the novel rate becomes ``p₀ + s(1 − p₀)``.

Detector: the upward side of the integer-lattice Bernoulli CUSUM of
:mod:`~driftscope_llm.services.drift.detectors.bernoulli_cusum` on the novel indicator, its zero
drift placed on the minimum effect ``p₀ + min_effect·(1 − p₀)`` (``min_effect`` read as the share
of outputs moving to new topics), threshold from the exact lattice chain at the pair's budgeted
run length. An indicator beyond a high quantile, rather than a rank score, is what a mixture
alternative calls for: novel outputs all land in the top ranks, and a Bernoulli CUSUM on that tail
gathers evidence several times faster than a normal-score CUSUM would (Kullback-Leibler 0.17 vs
0.04 nats per output at ``s`` = 10 %). The anomaly's effect is the estimated share
``(rate − p₀)/(1 − p₀)`` since the change point.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from driftscope_llm.services.drift.detector import DetectorContext, Finding
from driftscope_llm.services.drift.detectors.bernoulli_cusum import _side
from driftscope_llm.services.drift.embedding_space import EmbeddingReference
from driftscope_llm.services.drift.registry import register_detector
from driftscope_llm.services.drift.sequential import TwoSidedCusum
from driftscope_llm.services.drift.settings import SignalKind

__all__ = ["EmbeddingNovelty"]

TAIL = 0.02
"""Share of the null novelty scores above the cut (the in-control novel rate)."""


@register_detector("embedding_novelty", SignalKind.EMBEDDING)
class EmbeddingNovelty(TwoSidedCusum):
    """Bernoulli CUSUM on "unlike every reference topic" (module docstring)."""

    @classmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        ref = ctx.reference
        assert isinstance(ref, EmbeddingReference)
        n = int(ref.novelty.size)
        if n < 20:
            return {"disabled": "too_few_novelty_scores"}
        m = max(1, math.ceil(TAIL * (n + 1)))
        cut = float(ref.novelty[n - m])
        p0 = m / (n + 1.0)
        sd = math.sqrt(p0 * (1.0 - p0) / (n + 2.0))  # Beta(m, n+1-m)
        up = _side(ctx, p0, sd, p0 + ctx.config.min_effect * (1.0 - p0), upward=True)
        if up is None:
            return {"disabled": "minimum_effect_out_of_range"}
        return {"disabled": None, "p0": p0, "cut": cut, "up": up, "h_up": up["h"],
                "h_down": None}

    def setup_score(self) -> None:
        if self.disabled is not None:
            return
        c = self.calibration
        self._cut = float(c["cut"])
        self._p0 = float(c["p0"])
        self._steps = (float(c["up"]["on_true"]), float(c["up"]["on_false"]))
        ref = self.ctx.reference
        assert isinstance(ref, EmbeddingReference)
        self._ref = ref

    def update(self, value: Any, index: int) -> Finding | None:
        if self.disabled is not None:
            return None
        novel = float(self._ref.novelty_of(np.asarray(value, dtype=np.float64))[0]) > self._cut
        return self._advance(self._steps[0] if novel else self._steps[1], 0.0,
                             1.0 if novel else 0.0, index)

    @property
    def effect_unit(self) -> str:
        return "novel_share"

    def effect(self, segment_mean: float, side: int) -> tuple[float, bool]:
        share = (segment_mean - self._p0) / (1.0 - self._p0)
        return share, side > 0 and share >= self.ctx.config.min_effect
