"""The typed attribution report: records already in Redis (version 1, written as plain JSON by
the worker before the models existed) load unchanged, and the AttributionEvent says the same as
the report it announces."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from driftscope_llm.services.store import Incident, IncidentState
from driftscope_llm.services.store.attribution_report import (
    AttributedReport,
    FailedReport,
    VerificationFailure,
    attribution_event,
    parse_report,
)
from driftscope_llm.services.store.lifecycle import ALLOWED, OPEN_STATES, can_advance
from tests.attribution_reports import attributed_report, verification

# A version-1 report as the untyped worker stored it (keys, nesting and time format as written).
V1_ATTRIBUTED = json.loads("""{
 "version": 1, "status": "attributed", "target": "bot@v1", "model_dir": "/m",
 "adapter_dir": null, "model_fingerprint": "abc", "primary_method": "repsim", "top_k": 2,
 "aggregation": "mean reciprocal rank over exemplars (driftscope_llm.services.worker.aggregate)",
 "aggregate": [{"id": "x", "rank": 1, "mrr": 1.0, "hits": 1, "best_rank": 1, "mean_score": 0.9},
               {"id": "y", "rank": 2, "mrr": 0.5, "hits": 1, "best_rank": 2, "mean_score": 0.7}],
 "methods": {"repsim": {"spec": "repsim:mean_response", "index": "/i", "manifest_id": "m1",
   "corpus_hash": "h", "seconds": 0.1,
   "per_exemplar": [{"query_id": "e1", "method": "repsim:mean_response",
                     "results": [{"id": "x", "score": 0.9, "rank": 1},
                                 {"id": "y", "score": 0.7, "rank": 2}]}],
   "aggregate": [{"id": "x", "rank": 1, "mrr": 1.0, "hits": 1, "best_rank": 1,
                  "mean_score": 0.9}]}},
 "index_manifest_ids": {"repsim": "m1"},
 "agreement": {"per_exemplar": [], "mean_overlap": null, "mean_spearman": null},
 "exemplars": ["e1"], "skipped_exemplars": [], "timings": {"load_model_s": 0.2, "total_s": 1.0},
 "verification": {"error": "verify.corpus is not set"},
 "started_at": "2026-01-05T12:00:00+00:00", "finished_at": "2026-01-05T12:00:01.500000+00:00"
}""")
V1_FAILED = {"version": 1, "status": "failed", "code": "no_target",
             "reason": "no_target: no model target configured for bot@v9 (settings: models)",
             "target": None, "finished_at": "2026-01-05T12:00:00+00:00"}


def _same_json(a: object, b: object) -> None:
    """``a`` (dumped) says what ``b`` (stored) said: equal as JSON, times compared as instants
    (``+00:00`` and ``Z`` are the same time), keys added since version 1 only as null."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(b) <= set(a) and all(a[k] is None for k in set(a) - set(b))
        for k in b:
            _same_json(a[k], b[k])
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same_json(x, y)
    elif isinstance(a, str) and isinstance(b, str) and a[:2] == "20" and "T" in a:
        assert datetime.fromisoformat(a) == datetime.fromisoformat(b)
    else:
        assert a == b


def test_version_1_records_load_and_dump_unchanged() -> None:
    rep = parse_report(V1_ATTRIBUTED)
    assert isinstance(rep, AttributedReport)
    assert isinstance(rep.verification, VerificationFailure)
    assert [row.id for row in rep.top()] == ["x", "y"] and rep.top(1)[0].mean_score == 0.9
    _same_json(rep.model_dump(mode="json"), V1_ATTRIBUTED)
    failed = parse_report(V1_FAILED)
    assert isinstance(failed, FailedReport) and failed.top() == []
    _same_json(failed.model_dump(mode="json"), V1_FAILED)
    # a field a newer worker adds is kept, not dropped, by an older reader
    assert parse_report({**V1_FAILED, "attempt": 2}).model_dump()["attempt"] == 2


def test_incident_holds_the_typed_report_whichever_form_it_is_given() -> None:
    at = datetime(2026, 1, 5, tzinfo=UTC)
    inc = Incident(id="i", opened_at=at, updated_at=at, model="m", model_version="v",
                   segment="s", signal="refusal", detector="cusum", statistic=1.0,
                   threshold=1.0, effect_size=0.1, event_id="e", attribution=V1_ATTRIBUTED)
    assert isinstance(inc.attribution, AttributedReport)
    inc.attribution = V1_FAILED  # type: ignore[assignment]  # the JSON form, validated
    assert isinstance(inc.attribution, FailedReport)
    again = Incident.model_validate_json(inc.model_dump_json())
    assert again.attribution == inc.attribution
    with pytest.raises(ValidationError):
        inc.attribution = {"status": "attributed"}  # type: ignore[assignment]


def test_attribution_event_announces_the_reports_top_k() -> None:
    rep = attributed_report(["a", "b", "c"], methods=("repsim", "gradsim"),
                            verification=verification(2.0, 1.0))
    ev = attribution_event("inc-1", rep)
    assert (ev.incident_id, ev.status, ev.reason) == ("inc-1", "attributed", None)
    assert ev.methods == ["repsim", "gradsim"]
    assert [row["id"] for row in ev.top_examples] == ["a", "b", "c"]
    assert ev.finished_at == rep.finished_at
    failed = attribution_event("inc-2", V1_FAILED)
    assert (failed.status, failed.methods, failed.top_examples) == ("failed", [], [])
    assert failed.reason == V1_FAILED["reason"]


def test_open_is_every_state_from_which_resolving_is_still_a_move() -> None:
    assert {s for s in IncidentState if can_advance(s, IncidentState.RESOLVED)} == OPEN_STATES
    assert ALLOWED[IncidentState.RESOLVED] == frozenset()
    assert can_advance(IncidentState.FAILED, IncidentState.ATTRIBUTING)
    assert not can_advance(IncidentState.FAILED, IncidentState.ATTRIBUTED)  # a re-run goes
    # through attributing (what `driftscope attribute` does)
