"""The aggregate ranking of an attribution report: pure functions over ranked results.

The report itself is a typed record of the store
(:class:`~driftscope_llm.services.store.attribution_report.AttributedReport`); this module
computes its ``aggregate`` rows.

Aggregate ranking across exemplars — **mean reciprocal rank** (MRR). For training example ``x``
and the ``Q`` exemplars of an incident::

    mrr(x) = (1 / Q) · Σ_q 1 / rank_q(x)        (a term is 0 when x is not in q's top-k)

in (0, 1]; 1 means ``x`` is the top answer for every exemplar. Rank-based on purpose: raw scores
differ in sign and scale between methods (cosine for repsim, dot products for gradsim, inverse-
Hessian products for lissa/datainf) and between queries, while ranks mean the same everywhere.
Ties are broken by ``hits`` (how many exemplars have ``x`` in their top-k), then by the mean
score over those exemplars, then by id, so the order is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from driftscope_llm.services.store.attribution_report import AggregateRow

__all__ = ["AggregateRow", "aggregate_mrr", "manifest_id", "top_ids"]


class _Hit(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def score(self) -> float: ...

    @property
    def rank(self) -> int: ...


class _Ranked(Protocol):
    @property
    def query_id(self) -> str: ...

    @property
    def results(self) -> Sequence[_Hit]: ...


def aggregate_mrr(results: Sequence[_Ranked], top_k: int | None = None) -> list[AggregateRow]:
    """Aggregate per-exemplar rankings into one, by mean reciprocal rank (module docstring).

    ``top_k`` cuts the output (``None`` = every example that appears in some top-k list).
    An empty ``results`` gives an empty ranking.
    """
    q = len(results)
    if q == 0:
        return []
    rr: dict[str, float] = {}
    hits: dict[str, int] = {}
    best: dict[str, int] = {}
    scores: dict[str, float] = {}
    for res in results:
        for h in res.results:
            rr[h.id] = rr.get(h.id, 0.0) + 1.0 / h.rank
            hits[h.id] = hits.get(h.id, 0) + 1
            best[h.id] = min(best.get(h.id, h.rank), h.rank)
            scores[h.id] = scores.get(h.id, 0.0) + h.score
    order = sorted(rr, key=lambda i: (-rr[i], -hits[i], -scores[i] / hits[i], i))
    if top_k is not None:
        order = order[:top_k]
    return [AggregateRow(id=i, rank=n, mrr=rr[i] / q, hits=hits[i], best_rank=best[i],
                         mean_score=scores[i] / hits[i])
            for n, i in enumerate(order, start=1)]


def top_ids(rows: Sequence[AggregateRow] | Sequence[Mapping[str, Any]], k: int) -> list[str]:
    """The ids of the first ``k`` aggregate rows (objects or their JSON)."""
    out: list[str] = []
    for row in rows[:k]:
        out.append(str(row["id"]) if isinstance(row, Mapping) else row.id)
    return out


def manifest_id(index_dir: str | Path) -> str:
    """Identity of an index as built: the first 16 hex digits of its manifest's sha256
    (:func:`driftscope_llm.attribution.index.manifest.manifest_digest`, which refuses a
    directory that holds no valid manifest)."""
    from driftscope_llm.attribution.index.manifest import manifest_digest

    return manifest_digest(Path(index_dir))
