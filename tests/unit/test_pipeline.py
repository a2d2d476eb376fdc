"""The collector pipeline's pure logic, on the in-memory store: versions, dedup, redelivery."""

from __future__ import annotations

from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline, sampled
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.config import SegmentSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.store import MemoryStore

SMALL = DriftSettings(reference_size=400, min_reference_values=100, window_size=200,
                      min_window=50, test_every=25, cooldown_events=200)
ROUTES = SegmentSettings(label="route", allowed=["billing", "shipping", "account", "tech"])


def _pipeline(store: MemoryStore) -> Pipeline:
    return Pipeline(SMALL, SignalExtractor(SignalSettings()), ROUTES, store)


def _events(spec: StreamSpec, offset: int = 0) -> list[tuple[int, OutputEvent]]:
    return [(offset + i, OutputEvent.model_validate(e))
            for i, e in enumerate(generate_events(spec))]


def test_new_version_is_compared_with_the_previous_versions_reference() -> None:
    store = MemoryStore()
    p = _pipeline(store)
    state = PartitionState(topic="t", partition=0)
    v1 = StreamSpec(n=2000, model_version="v1", seed=1)
    assert p.process(state, _events(v1)) == []
    # v2 refuses billing questions from its very first event: with its own first events as
    # reference this would be invisible; against v1's reference it is caught.
    v2 = StreamSpec(n=1200, model_version="v2", seed=2, prefix="v2",
                    drifts=(Drift(start=0, route="billing", refusal_rate=0.3),))
    raised = p.process(state, _events(v2, offset=2000))
    refusal = [r for r in raised if r.anomaly.signal == "refusal"]
    assert refusal and {r.anomaly.key.model_version for r in refusal} == {"v2"}
    # billing's own stream raises; the model-level stream (all routes) may too: billing is a
    # quarter of the traffic, so its 30 % refusal rate lifts the overall rate from 2 % to ~9 %
    assert "billing" in {r.anomaly.key.segment for r in refusal}
    assert {r.anomaly.key.segment for r in refusal} <= {"billing", "all"}


def test_redelivered_offsets_are_not_observed_twice() -> None:
    p = _pipeline(MemoryStore())
    state = PartitionState(topic="t", partition=0)
    events = _events(StreamSpec(n=300, seed=3))
    p.process(state, events[:200])
    p.process(state, events[100:])  # 100 already seen: skipped
    # every event feeds its model-level stream once, and one route stream
    assert sum(n for sid, n in state.totals.items() if sid.endswith("|all")) == 300
    assert sum(n for sid, n in state.totals.items() if not sid.endswith("|all")) == 300
    assert state.next_offset == 300


def test_checkpoint_round_trip_continues_identically() -> None:
    spec = StreamSpec(n=3000, seed=5, drifts=(Drift(start=2000, route="billing",
                                                    refusal_rate=0.3),))
    events = _events(spec)
    straight = PartitionState(topic="t", partition=0)
    a = _pipeline(MemoryStore()).process(straight, events)

    store = MemoryStore()
    p = _pipeline(store)
    first = PartitionState(topic="t", partition=0)
    b = p.process(first, events[:1700])
    resumed = PartitionState.from_checkpoint(first.to_checkpoint(events[0][1].ts), SMALL)
    b += p.process(resumed, events[1700:])
    key = [(r.anomaly.signal, r.anomaly.detector, r.anomaly.event_id, r.anomaly.statistic)
           for r in a]
    assert key and key == [(r.anomaly.signal, r.anomaly.detector, r.anomaly.event_id,
                            r.anomaly.statistic) for r in b]
    assert resumed.totals == straight.totals


def test_embedding_sampling_is_deterministic_and_near_the_rate() -> None:
    ids = [f"e{i}" for i in range(20000)]
    picked = [sampled(i, 0.25) for i in ids]
    assert picked == [sampled(i, 0.25) for i in ids]
    assert abs(sum(picked) / len(ids) - 0.25) < 0.01
    assert all(sampled(i, 1.0) for i in ids[:100]) and not any(sampled(i, 0.0) for i in ids[:100])
