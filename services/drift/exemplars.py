"""Exemplars: the event ids of a window's most drifted items, most extreme first.

* continuous: the lowest values for a decrease, the highest for an increase (from the estimated
  change point on, when the detector gives one);
* boolean: the most recent true events for an increase (the refusals), false ones for a decrease;
* categorical: the most recent events of the category that grew most;
* embedding: the outputs of the cluster that grew most, or of the whole window, reaching
  farthest along the window's mean shift from the reference in whitened principal coordinates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftscope_llm.services.drift.embedding_space import EmbeddingReference
from driftscope_llm.services.drift.reference import ContinuousReference, SignalReference
from driftscope_llm.services.drift.settings import SignalKind
from driftscope_llm.services.drift.window import SignalWindow

__all__ = ["select_exemplars"]


def select_exemplars(
    kind: SignalKind, ref: SignalReference, window: SignalWindow, count: int, direction: str,
    focus: Any = None, since: int | None = None,
) -> list[str]:
    """Up to ``count`` event ids from ``window`` (rules in the module docstring)."""
    if count <= 0 or len(window) == 0:
        return []
    vals, ids, idx = window.values(), window.ids(), window.indices()
    if since is not None and any(i >= since for i in idx):
        keep = [j for j, i in enumerate(idx) if i >= since]
        vals, ids = [vals[j] for j in keep], [ids[j] for j in keep]
    if kind is SignalKind.CONTINUOUS:
        x = np.asarray(vals, dtype=np.float64)
        if direction == "decrease":
            order = np.argsort(x, kind="stable")
        elif direction == "increase":
            order = np.argsort(-x, kind="stable")
        else:
            med = float(np.median(ref.values)) if isinstance(ref, ContinuousReference) else 0.0
            order = np.argsort(-np.abs(x - med), kind="stable")
        return [ids[int(j)] for j in order[:count]]
    if kind is SignalKind.BOOLEAN:
        want = direction != "decrease"
        return [e for v, e in zip(reversed(vals), reversed(ids), strict=True)
                if bool(v) == want][:count]
    if kind is SignalKind.CATEGORICAL:
        return [e for v, e in zip(reversed(vals), reversed(ids), strict=True)
                if focus is None or v == focus][:count]
    assert isinstance(ref, EmbeddingReference)
    center = ref.projections.mean(axis=0)
    chosen = [(v, e) for v, e in zip(vals, ids, strict=True) if focus is None or v[1] == focus]
    if not chosen:
        return []
    y = np.stack([v[0] for v, _ in chosen]) - center
    # The outputs that carry the shift: largest component along the window's mean displacement
    # in whitened coordinates (the direction Hotelling's T² measures). Plain distance from the
    # reference mean would favour reference-like outputs that sit in the tails of low-variance
    # directions over the new topic, whose outputs cluster together away from the reference.
    shift = np.stack([v[0] for v in vals]).mean(axis=0) - center
    norm = float(np.linalg.norm(shift))
    score = y @ (shift / norm) if norm > 0 else np.einsum("ij,ij->i", y, y)
    return [chosen[int(j)][1] for j in np.argsort(-score, kind="stable")[:count]]
