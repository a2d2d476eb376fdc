"""The attribution report stored with an incident: typed records, one JSON shape on the wire.

The worker (:class:`~driftscope_llm.services.worker.job.Attributor`) writes one of two reports
into ``Incident.attribution``; everything that reads a report (the CLI, the HTML report, webhooks,
the worker's AttributionEvent) reads these models, never dict keys:

* :class:`AttributedReport` (``status == "attributed"``): per method its per-exemplar rankings
  and their aggregate, the primary method's aggregate as *the* answer, the agreement between
  methods and, when configured, the behavioural verification;
* :class:`FailedReport` (``status == "failed"``): a machine-readable ``code`` and a ``reason``.

:data:`AttributionReport` is their union, told apart by ``status``. The JSON is the same shape
the worker wrote before these models existed (version 1), so records already in Redis load.

Scores mean what the method says (cosine for repsim, dot products for gradsim, inverse-Hessian
products for lissa/datainf); ranks and ``mrr`` mean the same for every method (see
:mod:`driftscope_llm.services.worker.aggregate` for the aggregation).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from driftscope_llm.services.schemas import AttributionEvent

__all__ = [
    "REPORT_VERSION",
    "AggregateRow",
    "AgreementSummary",
    "AttributedReport",
    "AttributionReport",
    "ExemplarAgreement",
    "ExemplarRanking",
    "FailedReport",
    "MethodResult",
    "PairAgreement",
    "RankedExample",
    "Trust",
    "Verification",
    "VerificationArm",
    "VerificationFailure",
    "attribution_event",
    "parse_report",
]

REPORT_VERSION = 1


class _Record(BaseModel):
    # extra="allow": a report written by a newer worker still loads in an older CLI
    model_config = ConfigDict(extra="allow", frozen=True)


class AggregateRow(_Record):
    """One training example in an incident's aggregate ranking (best first).

    ``mrr`` is the mean reciprocal rank over the exemplars, in (0, 1]; ``hits`` how many
    exemplars have the example in their top-k; ``best_rank`` its best rank there;
    ``mean_score`` the method's mean raw score over those exemplars (method-specific scale).
    """

    id: str
    rank: int
    mrr: float
    hits: int
    best_rank: int
    mean_score: float


class RankedExample(_Record):
    """One training example in one exemplar's ranking: rank 1 = most responsible."""

    id: str
    score: float
    rank: int


class ExemplarRanking(_Record):
    """One method's ranking for one exemplar (``query_id`` is the exemplar's event id)."""

    query_id: str
    method: str
    results: list[RankedExample]


class MethodResult(_Record):
    """What one method's index answered, and which index it was."""

    spec: str
    index: str
    manifest_id: str
    corpus_hash: str | None = None
    seconds: float
    per_exemplar: list[ExemplarRanking]
    aggregate: list[AggregateRow]


class PairAgreement(_Record):
    """Two methods' top-k lists for one exemplar: overlap@k in [0, 1], Spearman/Kendall in
    [-1, 1] (``None`` when undefined), see :mod:`driftscope_llm.attribution.agreement`."""

    a: str
    b: str
    overlap: float
    spearman: float | None = None
    kendall: float | None = None


class ExemplarAgreement(_Record):
    query_id: str
    k: int
    mean_overlap: float | None = None
    mean_spearman: float | None = None
    mean_kendall: float | None = None
    pairs: list[PairAgreement] = Field(default_factory=list)


class AgreementSummary(_Record):
    """Agreement between methods; the means are ``None`` when only one method ran."""

    per_exemplar: list[ExemplarAgreement] = Field(default_factory=list)
    mean_overlap: float | None = None
    mean_spearman: float | None = None


class VerificationArm(_Record):
    """Unlearning one set of examples: their ids, the exemplars' mean per-token log-likelihood
    after, and the effect (its drop from before, in nats; positive = the behaviour weakened)."""

    ids: list[str]
    loglik_after: float
    effect: float


class Verification(_Record):
    """Behavioural verification: unlearn the top-k attributed examples vs k random ones.

    ``supports_attribution`` is ``top_k.effect > random.effect``; ``ratio`` their quotient
    (``None`` when the random effect is not positive).
    """

    method: str
    settings: dict[str, Any] = Field(default_factory=dict)
    loglik_before: float
    top_k: VerificationArm
    random: VerificationArm
    #: k random examples of the behaviour's label (a perfect class identifier), when the
    #: corpus is labelled (``retrain`` and ``replay`` modes); ``None`` otherwise
    same_label: VerificationArm | None = None
    ratio: float | None = None
    supports_attribution: bool
    seconds: float | None = None

    @property
    def corpus(self) -> str | None:
        """The verification corpus path the worker used, if it was recorded."""
        value = self.settings.get("corpus")
        return str(value) if value else None


class Trust(_Record):
    """How far to trust the report (:mod:`driftscope_llm.attribution.trust`): ``level`` is
    ``high``, ``medium`` or ``low``; the primary method's measured Cover (mean, lower 95% bound)
    and QLD on the task ``family`` closest to the incident's signal; the methods' agreement
    (mean overlap@k, ``None`` with one method); ``advice`` says what to do, in one sentence."""

    level: str
    method: str
    family: str | None = None
    measured_cover: float | None = None
    measured_cover_lo: float | None = None
    measured_qld: float | None = None
    agreement: float | None = None
    advice: str

    def describe(self) -> str:
        """``trust: LEVEL — advice [measured: ...]``, one line for people (not escaped)."""
        measured = []
        if self.measured_cover is not None:
            lo = ("" if self.measured_cover_lo is None
                  else f" (95% lower bound {self.measured_cover_lo:.2f})")
            where = f" on the {self.family} task family" if self.family else ""
            measured.append(f"{self.method} Cover {self.measured_cover:.2f}{lo}{where}")
        if self.measured_qld is not None:
            measured.append(f"QLD {self.measured_qld:+.2f}")
        tail = f" [measured: {', '.join(measured)}]" if measured else ""
        return f"trust: {self.level.upper()} — {self.advice}{tail}"


class VerificationFailure(_Record):
    """Verification was configured but could not run; the report itself still stands."""

    error: str


class AttributedReport(_Record):
    """A finished attribution (module docstring)."""

    version: int = REPORT_VERSION
    status: Literal["attributed"] = "attributed"
    target: str
    model_dir: str
    adapter_dir: str | None = None
    model_fingerprint: str
    primary_method: str
    top_k: int
    aggregation: str
    aggregate: list[AggregateRow]
    methods: dict[str, MethodResult]
    index_manifest_ids: dict[str, str]
    agreement: AgreementSummary = Field(default_factory=AgreementSummary)
    exemplars: list[str]
    skipped_exemplars: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    verification: Verification | VerificationFailure | None = None
    trust: Trust | None = None
    started_at: datetime
    finished_at: datetime

    @property
    def reason(self) -> None:
        """No failure reason (a uniform attribute across both report kinds)."""
        return None

    def top(self, k: int | None = None) -> list[AggregateRow]:
        """The first ``k`` aggregate rows (default: the report's ``top_k``)."""
        return self.aggregate[: self.top_k if k is None else k]


class FailedReport(_Record):
    """An attribution that ended as ``failed``: ``code`` (a key of the worker's
    ``FAILURE_CODES``) and a human ``reason``; ``target`` is ``None`` when none matched."""

    version: int = REPORT_VERSION
    status: Literal["failed"] = "failed"
    code: str
    reason: str
    target: str | None = None
    finished_at: datetime

    def top(self, k: int | None = None) -> list[AggregateRow]:
        """A failed report ranks nothing."""
        return []


AttributionReport = Annotated[AttributedReport | FailedReport, Field(discriminator="status")]


_REPORT: TypeAdapter[AttributedReport | FailedReport] = TypeAdapter(AttributionReport)


def parse_report(data: AttributedReport | FailedReport | Mapping[str, Any]
                 ) -> AttributedReport | FailedReport:
    """A typed report from its JSON form (a typed one is returned as is)."""
    if isinstance(data, AttributedReport | FailedReport):
        return data
    return _REPORT.validate_python(dict(data))


def attribution_event(incident_id: str,
                      report: AttributedReport | FailedReport | Mapping[str, Any]
                      ) -> AttributionEvent:
    """The ``driftscope.attributions`` message announcing ``report`` (its top-k rows)."""
    rep = parse_report(report)
    methods = list(rep.methods) if isinstance(rep, AttributedReport) else []
    return AttributionEvent(
        incident_id=incident_id, status=rep.status, reason=rep.reason, methods=methods,
        top_examples=[row.model_dump(mode="json") for row in rep.top()],
        finished_at=rep.finished_at)
