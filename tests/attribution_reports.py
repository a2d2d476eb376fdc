"""Typed attribution reports for unit tests of what reads them (webhooks, the HTML report).

Built through the store's own models, so a report that the models would refuse cannot be
built here. Tests of the CLI use reports from a real ``Attributor.run`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from driftscope_llm.services.store.attribution_report import (
    AggregateRow,
    AgreementSummary,
    AttributedReport,
    ExemplarRanking,
    MethodResult,
    RankedExample,
    Verification,
    VerificationArm,
)

AT = datetime(2025, 1, 6, 10, tzinfo=UTC)


def attributed_report(ids: Sequence[str], *, exemplar: str = "e-1",
                      methods: Sequence[str] = ("repsim",),
                      agreement: AgreementSummary | None = None,
                      verification: Verification | None = None) -> AttributedReport:
    """A report ranking ``ids`` first to last for one exemplar, the same for every method."""
    ranked = [RankedExample(id=i, score=1.0 - 0.1 * n, rank=n + 1) for n, i in enumerate(ids)]
    rows = [AggregateRow(id=r.id, rank=r.rank, mrr=1.0 / r.rank, hits=1, best_rank=r.rank,
                         mean_score=r.score) for r in ranked]
    per_method = {m: MethodResult(spec=m, index=f"/idx/{m}", manifest_id=f"{m}-manifest",
                                  seconds=0.5, aggregate=rows,
                                  per_exemplar=[ExemplarRanking(query_id=exemplar, method=m,
                                                                results=ranked)])
                  for m in methods}
    return AttributedReport(
        target="t", model_dir="/models/t", model_fingerprint="fp", primary_method=methods[0],
        top_k=len(ids), aggregation="mean reciprocal rank over exemplars", aggregate=rows,
        methods=per_method, index_manifest_ids={m: f"{m}-manifest" for m in methods},
        agreement=agreement or AgreementSummary(), exemplars=[exemplar],
        verification=verification, started_at=AT, finished_at=AT)


def verification(top_effect: float, random_effect: float) -> Verification:
    """A verification whose top-k and random arms moved the log-likelihood by these effects."""
    return Verification(
        method="gradient_ascent", loglik_before=-0.5,
        top_k=VerificationArm(ids=["a"], loglik_after=-0.5 - top_effect, effect=top_effect),
        random=VerificationArm(ids=["b"], loglik_after=-0.5 - random_effect,
                               effect=random_effect),
        ratio=top_effect / random_effect if random_effect > 0 else None,
        supports_attribution=top_effect > random_effect)
