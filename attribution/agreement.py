"""How far attribution methods agree on one query — a trust signal for the answer.

For each pair of methods and their top-k lists for the same query:

* **overlap@k** = |top-k(A) ∩ top-k(B)| / k, in [0, 1];
* **Spearman ρ** and **Kendall τ-b** between the two rankings over the union of both top-k
  lists, an item missing from a list taking the tied rank k+1 there (the usual treatment of
  top-k lists); in [-1, 1], 1 = same order. ``None`` when undefined (a constant ranking).

Many methods agreeing (high overlap, high ρ) marks a trustworthy attribution; disagreement marks
a shaky one. A single method has no agreement to report (empty ``pairs``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Protocol

__all__ = ["Agreement", "PairAgreement", "agreement", "agreement_for_query"]


class _Ranked(Protocol):
    @property
    def query_id(self) -> str: ...

    @property
    def results(self) -> Sequence[Any]: ...


@dataclass(frozen=True)
class PairAgreement:
    a: str
    b: str
    overlap: float
    spearman: float | None
    kendall: float | None


@dataclass(frozen=True)
class Agreement:
    """Agreement of every pair of methods on one query, and their means."""

    query_id: str
    k: int
    pairs: list[PairAgreement] = field(default_factory=list)

    def _mean(self, attr: str) -> float | None:
        vals = [getattr(p, attr) for p in self.pairs if getattr(p, attr) is not None]
        return sum(vals) / len(vals) if vals else None

    @property
    def mean_overlap(self) -> float | None:
        return self._mean("overlap")

    @property
    def mean_spearman(self) -> float | None:
        return self._mean("spearman")

    @property
    def mean_kendall(self) -> float | None:
        return self._mean("kendall")

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.k, "mean_overlap": self.mean_overlap,
            "mean_spearman": self.mean_spearman, "mean_kendall": self.mean_kendall,
            "pairs": [p.__dict__ for p in self.pairs],
        }


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _pair(a: str, ids_a: list[str], b: str, ids_b: list[str], k: int) -> PairAgreement:
    overlap = len(set(ids_a) & set(ids_b)) / k
    union = sorted(set(ids_a) | set(ids_b))
    ra = {i: r for r, i in enumerate(ids_a, start=1)}
    rb = {i: r for r, i in enumerate(ids_b, start=1)}
    xa = [ra.get(i, k + 1) for i in union]
    xb = [rb.get(i, k + 1) for i in union]
    if len(union) < 2 or len(set(xa)) < 2 or len(set(xb)) < 2:
        return PairAgreement(a, b, overlap, None, None)
    from scipy import stats

    rho = _finite(float(stats.spearmanr(xa, xb).statistic))
    tau = _finite(float(stats.kendalltau(xa, xb).statistic))
    return PairAgreement(a, b, overlap, rho, tau)


def agreement_for_query(rankings: Mapping[str, Sequence[str]], k: int,
                        query_id: str = "") -> Agreement:
    """Agreement between methods' ranked id lists (best first) for one query."""
    tops = {m: list(ids[:k]) for m, ids in rankings.items()}
    pairs = [_pair(a, tops[a], b, tops[b], k) for a, b in combinations(sorted(tops), 2)]
    return Agreement(query_id, k, pairs)


def agreement(per_method: Mapping[str, Sequence[_Ranked]], k: int = 10) -> list[Agreement]:
    """Per-query agreement, matching each method's results by ``query_id``.

    ``per_method`` maps a method name to its results (e.g. ``Index.query`` output).
    """
    by_query: dict[str, dict[str, list[str]]] = {}
    for method, results in per_method.items():
        for res in results:
            by_query.setdefault(res.query_id, {})[method] = [h.id for h in res.results]
    return [agreement_for_query(r, k, qid) for qid, r in by_query.items()]
