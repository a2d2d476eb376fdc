"""Verification is measured on the exemplars of the behaviour the incident is about."""

from __future__ import annotations

from datetime import UTC, datetime

from driftscope_llm.attribution.data import Example
from driftscope_llm.services.store.facets import Facet
from driftscope_llm.services.store.model import Exemplar, Incident
from driftscope_llm.services.worker.job import behaviour_queries, exemplar_queries

AT = datetime(2026, 1, 5, tzinfo=UTC)


def _facet(segment: str, signal: str, effect: float, minimum: float, ids: list[str]) -> Facet:
    return Facet(segment=segment, signal=signal, detector="d", effect_size=effect,
                 min_effect=minimum, statistic=1.0, threshold=0.5, first_event_id=ids[0],
                 first_at=AT, last_at=AT, exemplars=ids)


def _incident(facets: list[Facet]) -> Incident:
    ids = [i for f in facets for i in f.exemplars]
    return Incident(id="i", opened_at=AT, updated_at=AT, model="m", model_version="v2",
                    segment="all", signal="refusal", detector="d", statistic=1.0,
                    threshold=0.5, effect_size=0.1, event_id=ids[0], facets=facets,
                    exemplars=[Exemplar(event_id=i, prompt="p", output=f"out {i}") for i in ids])


def test_the_headline_facets_exemplars_are_the_verification_queries() -> None:
    # latency moved 3x its minimum, refusal 10x: refusal is the headline (largest relative)
    inc = _incident([_facet("all", "latency_ms", 0.6, 0.2, ["l1", "l2"]),
                     _facet("route=billing", "refusal", 0.2, 0.02, ["r1", "r2", "r3"])])
    queries, _ = exemplar_queries(inc, 50)
    assert [q.id for q in behaviour_queries(inc, queries)] == ["r1", "r2", "r3"]


def test_without_facets_or_texts_every_query_is_kept() -> None:
    inc = _incident([_facet("all", "refusal", 0.2, 0.02, ["r1"])])
    others = [Example("x", "p", "o"), Example("y", "p", "o")]
    assert behaviour_queries(inc, others) == others  # none of the headline's exemplars has text
    inc.facets = []
    assert behaviour_queries(inc, others) == others
