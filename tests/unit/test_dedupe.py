"""Repeated deliveries: the same event twice on a partition is counted once; a different event
that reuses an id is not a repeat; the memory is bounded."""

from __future__ import annotations

import doctest
import json
from typing import Any

from driftscope_llm.services.collector import dedupe
from driftscope_llm.services.collector.batch import process_batch
from driftscope_llm.services.collector.build import build_pipeline
from driftscope_llm.services.collector.dedupe import RecentEvents
from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from driftscope_llm.services.config import CollectorSettings
from driftscope_llm.services.store import MemoryStore


def _pipeline() -> Pipeline:
    s = CollectorSettings()
    return build_pipeline(s.drift, s.signals, s.segments,
                          s.embedder.model_copy(update={"enabled": False}), MemoryStore())


def _records(events: list[dict[str, Any]]) -> list[tuple[int, bytes]]:
    return [(i, json.dumps(e).encode()) for i, e in enumerate(events)]


def test_the_module_example_runs() -> None:
    assert doctest.testmod(dedupe).failed == 0


def test_a_retried_batch_is_counted_once() -> None:
    """The chaos suite's broker-pause case: a batch lands, is retried, lands again."""
    events = list(generate_events(StreamSpec(n=50, seed=1)))
    records = _records(events + events[10:30])
    state = PartitionState(topic="t", partition=0)
    out = process_batch(_pipeline(), state, records, max_bytes=1_000_000)
    assert out.duplicates == list(range(50, 70))
    assert [e.event_id for _, e in out.observed] == [e["event_id"] for e in events]


def test_the_same_counts_as_a_stream_without_the_repeats() -> None:
    events = list(generate_events(StreamSpec(n=300, seed=2)))
    once = PartitionState(topic="t", partition=0)
    twice = PartitionState(topic="t", partition=0)
    process_batch(_pipeline(), once, _records(events), max_bytes=1_000_000)
    process_batch(_pipeline(), twice, _records(events[:200] + events[100:]), max_bytes=1_000_000)
    assert twice.totals == once.totals
    assert {k: m.state_dict() for k, m in twice.monitors.items()} == {
        k: m.state_dict() for k, m in once.monitors.items()}


def test_an_id_reused_for_another_event_is_not_a_repeat() -> None:
    event = next(iter(generate_events(StreamSpec(n=1, seed=3))))
    other = {**event, "output": event["output"] + " (a different answer)"}
    out = process_batch(_pipeline(), PartitionState(topic="t", partition=0),
                        _records([event, other]), max_bytes=1_000_000)
    assert out.duplicates == [] and len(out.observed) == 2


def test_memory_is_bounded_and_forgets_the_oldest() -> None:
    raws = [raw for _, raw in _records(list(generate_events(StreamSpec(n=5, seed=4))))]
    seen = RecentEvents(capacity=3)
    assert [seen.repeat(r, 0) for r in raws] == [False] * 5
    assert seen.repeat(raws[4], 0) and seen.repeat(raws[2], 0)
    assert not seen.repeat(raws[0], 0)  # forgotten: more than 3 events ago
    assert not seen.repeat(raws[4], 1)  # another event of the same message
    assert len(seen._seen) == len(seen._order) == 3
