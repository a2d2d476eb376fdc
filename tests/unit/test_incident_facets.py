"""One incident per change: facets, headline, severity and exemplar order (pure logic and the
collector pipeline on the in-memory store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline
from driftscope_llm.services.collector.segments import SegmentSettings
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.report import ReportInputs, render_report
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.store import MemoryStore
from driftscope_llm.services.store.facets import (
    Facet,
    FacetRow,
    facet_rows,
    group_key,
    headline,
    merge_facets,
    ordered_exemplar_ids,
    severity_of,
)
from driftscope_llm.services.store.model import Exemplar, Incident, IncidentState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def facet(segment: str, signal: str, effect: float, minimum: float, ids: list[str],
          detector: str = "cusum", at: int = 0) -> Facet:
    t = T0 + timedelta(seconds=at)
    return Facet(segment=segment, signal=signal, detector=detector, effect_size=effect,
                 min_effect=minimum, statistic=1.0, threshold=1.0, first_event_id=ids[0],
                 first_at=t, last_at=t, exemplars=ids)


def test_headline_is_the_largest_effect_relative_to_its_minimum() -> None:
    latency = facet("all", "latency_ms", 0.9, 0.2, ["l1"])  # 4.5x its minimum
    refusal = facet("route=billing", "refusal", 0.12, 0.02, ["r1"])  # 6x
    conf = facet("all", "logprob_mean", 1.0, 0.25, ["c1"])  # 4x
    assert headline([latency, refusal, conf]) is refusal
    assert severity_of([latency, refusal, conf]) == "critical"
    assert severity_of([facet("all", "refusal", 0.05, 0.02, ["x"])]) == "warning"
    assert severity_of([facet("all", "refusal", 0.03, 0.02, ["x"])]) == "info"


def test_exemplars_favour_behaviour_over_operations() -> None:
    latency = facet("all", "latency_ms", 5.0, 0.2, ["l1", "l2"])  # the largest effect ...
    topic = facet("all", "embedding", 0.2, 0.05, ["t1", "shared"], detector="embedding_novelty")
    refusal = facet("route=billing", "refusal", 0.06, 0.02, ["r1", "shared"])
    # ... but attribution gets refusals first, then topic, then latency; no repeats
    assert ordered_exemplar_ids([latency, topic, refusal]) == ["r1", "shared", "t1", "l1", "l2"]


def test_a_repeated_facet_is_absorbed_and_a_new_one_appended() -> None:
    facets = [facet("all", "refusal", 0.04, 0.02, ["a"])]
    merge_facets(facets, [facet("all", "refusal", 0.08, 0.02, ["b"], at=60),
                          facet("all", "logprob_mean", 0.5, 0.25, ["c"], at=60)])
    assert [(f.signal, f.alarms) for f in facets] == [("refusal", 2), ("logprob_mean", 1)]
    assert facets[0].effect_size == 0.08 and facets[0].exemplars == ["a", "b"]
    assert facets[0].first_at == T0 and facets[0].last_at == T0 + timedelta(seconds=60)


def _pipeline(store: MemoryStore, cooldown_s: float = 3600.0) -> Pipeline:
    settings = DriftSettings(reference_size=400, min_reference_values=100, window_size=200,
                             min_window=50, test_every=25, cooldown_events=200)
    return Pipeline(settings, SignalExtractor(SignalSettings()), SegmentSettings(), store,
                    cooldown_s=cooldown_s)


def _events(spec: StreamSpec, offset: int) -> list[tuple[int, OutputEvent]]:
    return [(offset + i, OutputEvent.model_validate(e))
            for i, e in enumerate(generate_events(spec))]


def test_a_rollout_that_moves_several_signals_in_several_routes_is_one_incident() -> None:
    store = MemoryStore()
    p = _pipeline(store)
    state = PartitionState(topic="t", partition=0)
    assert p.process(state, _events(StreamSpec(n=1600, seed=1), 0)) == []
    # v2: billing refuses, and every route's answers get longer and less confident
    v2 = StreamSpec(n=1600, seed=2, model_version="v2", prefix="b", drifts=(
        Drift(start=0, route="billing", refusal_rate=0.4),
        Drift(start=0, logprob_shift=-0.6, length_factor=2.0)))
    raised = p.process(state, _events(v2, 1600))
    facets = {(r.anomaly.key.segment, r.anomaly.signal, r.anomaly.detector) for r in raised}
    assert len(facets) >= 3 and len({s for s, _, _ in facets}) >= 2  # several routes, signals
    incidents = store.list_incidents()
    assert len(incidents) == 1 and sum(r.opened for r in raised) == 1
    inc = incidents[0]
    assert {(f.segment, f.signal, f.detector) for f in inc.facets} == facets
    top = headline(inc.facets)
    assert top is not None and (inc.segment, inc.signal, inc.detector) == top.key
    assert all(f.relative_effect <= top.relative_effect for f in inc.facets)
    # billing's refusals come first among the exemplars attribution will see
    refusals = {e for f in inc.facets if f.signal == "refusal" for e in f.exemplars}
    assert inc.exemplars[0].event_id in refusals
    assert inc.exemplars[0].output and "sorry" in inc.exemplars[0].output


def _incident(f: Facet, at: int) -> Incident:
    t = T0 + timedelta(seconds=at)
    inc = Incident(id=f"inc-{at}", opened_at=t, updated_at=t, model="m", model_version="v2",
                   segment=f.segment, signal=f.signal, detector=f.detector, statistic=1.0,
                   threshold=1.0, effect_size=f.effect_size, event_id=f"e{at}",
                   exemplars=[Exemplar(event_id=e) for e in f.exemplars], facets=[f])
    inc.apply_facets()
    return inc


def test_facets_within_the_grouping_window_join_later_ones_open_a_new_incident() -> None:
    store = MemoryStore()
    key = group_key("m", "v2")
    first, opened = store.open_or_update_incident(
        _incident(facet("route=billing", "refusal", 0.06, 0.02, ["r1"]), 0), key, 600.0)
    assert opened and first.severity == "warning"
    joined, opened = store.open_or_update_incident(
        _incident(facet("all", "logprob_mean", 1.5, 0.25, ["c1"], at=300), 300), key, 600.0)
    assert not opened and joined.id == first.id and len(joined.facets) == 2
    # the new facet is larger relative to its minimum: it becomes the headline, severity rises,
    # but the refusal's exemplar stays first for attribution
    assert (joined.signal, joined.severity) == ("logprob_mean", "critical")
    assert [e.event_id for e in joined.exemplars] == ["r1", "c1"]
    later, opened = store.open_or_update_incident(
        _incident(facet("all", "refusal", 0.06, 0.02, ["r9"], at=2000), 2000), key, 600.0)
    assert opened and later.id != first.id


def test_the_incident_gauge_keeps_one_series_per_version_at_its_severity() -> None:
    from prometheus_client import CollectorRegistry

    from driftscope_llm.services.collector.metrics import CollectorMetrics

    registry = CollectorRegistry()
    m = CollectorMetrics(registry)
    m.export_incident("chat", "v7", "warning", 2)
    m.export_incident("chat", "v7", "critical", 3)
    m.export_incident("chat", "v6", "info", 1)

    def value(version: str, severity: str) -> float | None:
        return registry.get_sample_value("driftscope_incident_facets", {
            "model": "chat", "model_version": version, "severity": severity})

    assert value("v7", "critical") == 3 and value("v7", "warning") is None
    assert value("v6", "info") == 1


def test_the_html_report_shows_every_facet_escaped() -> None:
    import html
    import re

    from driftscope_llm.services.report import ReportInputs, render_report

    store = MemoryStore()
    key = group_key("m", "v2")
    hostile = "route=<script>alert(1)</script>"
    store.open_or_update_incident(
        _incident(facet(hostile, "refusal", 0.06, 0.02, ["r1"]), 0), key, 600.0)
    inc, _ = store.open_or_update_incident(
        _incident(facet("all", "logprob_mean", 1.5, 0.25, ["c1"], at=30), 30), key, 600.0)
    page = render_report(ReportInputs(incident=inc))
    assert "<script>alert(1)</script>" not in page
    section = page.split("<h2>Facets", 1)[1].split("<h2>", 1)[0]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td>", section)
    assert [tuple(html.unescape(c) for c in r) for r in rows] == [
        ("all", "logprob_mean", "cusum"), (hostile, "refusal", "cusum")]
    assert "Severity <b>critical</b>; 2 facets" in section


def test_a_persisting_drift_keeps_its_incident_past_the_grouping_window() -> None:
    """Re-alarms of a facet come once per cooldown; on a quiet segment that is longer than the
    grouping window (here 60 s, events a second apart), yet it is the same change."""
    store = MemoryStore()
    p = _pipeline(store, cooldown_s=60.0)
    state = PartitionState(topic="t", partition=0)
    spec = StreamSpec(n=6000, seed=5, drifts=(Drift(start=1000, route="billing",
                                                    refusal_rate=0.4),))
    raised = p.process(state, _events(spec, 0))
    first: dict[tuple[str, str, str], str] = {}
    repeats = 0
    for r in raised:
        k = (r.anomaly.key.segment, r.anomaly.signal, r.anomaly.detector)
        if k in first:
            repeats += 1
            assert r.incident.id == first[k] and not r.opened, k
        first.setdefault(k, r.incident.id)
    assert repeats >= 3  # the billing refusal re-raised several times, 800 s apart
    [inc] = store.list_incidents()  # one change, one incident, past the 60 s window
    # once resolved, the drift still going on opens a new incident
    store.update_incident(inc.id, lambda i: i.transition(IncidentState.RESOLVED, i.updated_at))
    later = spec.start + timedelta(days=1)  # past the store's grouping window too
    more = p.process(state, _events(StreamSpec(n=3000, seed=6, prefix="later", start=later,
                                               drifts=(Drift(start=0, route="billing",
                                                             refusal_rate=0.4),)), 6000))
    assert more and more[0].opened and more[0].incident.id != inc.id
    assert {r.incident.id for r in more} == {more[0].incident.id}


def test_facet_rows_are_typed_headline_first_and_reach_the_html_report() -> None:
    latency = facet("all", "latency_ms", 0.9, 0.2, ["l1"], at=5)  # 4.5x its minimum
    refusal = facet("route=<b>billing</b>", "refusal", 0.12, 0.02, ["r1", "r2"])  # 6x
    conf = facet("all", "logprob_mean", 1.0, 0.25, ["c1"])  # 4x
    rows = facet_rows([latency, refusal, conf])
    assert all(isinstance(r, FacetRow) for r in rows)
    assert [(r.signal, r.headline) for r in rows] == [
        ("refusal", True), ("latency_ms", False), ("logprob_mean", False)]
    assert rows[0].relative_effect == refusal.relative_effect
    assert rows[0].exemplars == ("r1", "r2") and rows[1].first_at_text == "2026-01-01T00:00:05"

    inc = Incident(id="i", opened_at=T0, updated_at=T0, model="m", model_version="v2",
                   segment="all", signal="refusal", detector="cusum", statistic=1.0,
                   threshold=1.0, effect_size=0.12, event_id="r1",
                   facets=[latency, refusal, conf])
    inc.apply_facets()
    page = render_report(ReportInputs(incident=inc))
    table = page[page.index("<h2>Facets"):page.index("<h2>Drifted signals")]
    assert table.count("<tr><td>") == 3
    assert ("<tr><td>route=&lt;b&gt;billing&lt;/b&gt;</td><td>refusal</td><td>cusum</td>"
            "<td>0.12 </td><td>6.0</td><td></td><td>r1</td><td>2026-01-01T00:00:00</td>"
            "<td>1</td><td>r1, r2</td></tr>") in table
    assert table.index("refusal") < table.index("latency_ms") < table.index("logprob_mean")
