"""Time the collector can trust (issue 28, item 1): a client's ``ts`` never orders anything.

A rollout that refuses 30% of the time from its first event is caught against the previous
version's reference. When v2's first event said year 1 (or v1's first said year 9999), v2 used
to be "first seen" before v1, was compared with nothing, took its own refusing events as its
reference and raised nothing. Invariant here: with either lie the anomalies are exactly those of
ordinary timestamps, in ``replay`` and in the collector, and the lie is flagged and counted.
On 44e8acf both lies gave 0 anomalies in both paths (``assert [] == [...]``).
The same rollout on Kafka and Redis: tests/integration/test_clock_skew_kafka.py; the clock's
own rules: tests/unit/test_event_clock.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from driftscope_llm.services.bus import MemoryBroker, TopicSettings
from driftscope_llm.services.collector.metrics import CollectorMetrics
from driftscope_llm.services.collector.pipeline import Pipeline, RaisedAnomaly
from driftscope_llm.services.collector.replay import ReplayStats, replay_file
from driftscope_llm.services.collector.service import Collector
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import ClockLie, rollout
from driftscope_llm.services.config import SegmentSettings
from driftscope_llm.services.drift import DriftSettings, SignalConfig, SignalKind
from driftscope_llm.services.store import MemoryStore

# the refusal rate alone, tested by windows: what the rollout changes, at a fraction of the cost
# of every signal's calibrated sequential detectors
REFUSAL = SignalConfig(kind=SignalKind.BOOLEAN, detectors=("two_proportion",), min_effect=0.02,
                       min_relative_effect=0.5)
SMALL = DriftSettings(reference_size=400, min_reference_values=100, window_size=200,
                      min_window=50, test_every=25, cooldown_events=200,
                      signals={"refusal": REFUSAL})
SEGMENTS = SegmentSettings(label="route", allowed=["billing", "shipping"])
TOPICS = TopicSettings(outputs="in", dead_letter="in.dlq", anomalies="anomalies")
N_V1, N_V2 = 600, 600
LIES: list[ClockLie | None] = [None, "v2-year-1", "v1-year-9999"]

Found = list[tuple[str, str, str, str, str]]


def found(raised: list[RaisedAnomaly]) -> Found:
    """What was caught, by event: (event, version, segment, signal, detector)."""
    return [(r.anomaly.event_id, r.anomaly.key.model_version, r.anomaly.key.segment,
             r.anomaly.signal, r.anomaly.detector) for r in raised]


def pipeline(store: MemoryStore) -> Pipeline:
    return Pipeline(SMALL, SignalExtractor(SignalSettings()), SEGMENTS, store)


def replay_rollout(tmp_path: Path, lie: ClockLie | None) -> tuple[Found, set[str], ReplayStats]:
    """The rollout through ``replay``: what was caught, the incidents, the replay's counts."""
    path = tmp_path / f"rollout-{lie}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in rollout(N_V1, N_V2, lie=lie)))
    stats = ReplayStats()
    raised = list(replay_file(path, pipeline(MemoryStore()), stats))
    return found(raised), {r.incident.id for r in raised}, stats


def collect_rollout(lie: ClockLie | None) -> tuple[Found, CollectorMetrics, MemoryStore]:
    """The rollout through the collector on the in-memory bus, timestamps near the broker's."""
    broker = MemoryBroker()
    start = datetime.now(UTC) - timedelta(seconds=N_V1 + N_V2)
    for e in rollout(N_V1, N_V2, lie=lie, start=start):
        broker.append(TOPICS.outputs, json.dumps(e).encode())
    store = MemoryStore()
    metrics = CollectorMetrics(CollectorRegistry())
    raised: list[RaisedAnomaly] = []
    collector = Collector(pipeline(store), store, metrics,
                          broker.member("collector", max_poll_records=200), TOPICS,
                          checkpoint_every=300)
    publish = collector._publish_anomaly

    def keep(r: RaisedAnomaly) -> None:
        raised.append(r)
        publish(r)

    collector._publish_anomaly = keep  # type: ignore[method-assign]
    collector.run(max_idle_s=0.0)
    return found(raised), metrics, store


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory,
             ) -> dict[ClockLie | None, tuple[Found, set[str], ReplayStats]]:
    tmp = tmp_path_factory.mktemp("clock")
    return {lie: replay_rollout(tmp, lie) for lie in LIES}


def test_the_rollout_is_caught_with_ordinary_timestamps(replayed: Any) -> None:
    caught, incidents, stats = replayed[None]
    assert caught and {c[1] for c in caught} == {"v2"}
    assert any(c[3] == "refusal" for c in caught)
    assert len(incidents) == 1
    assert stats.clock_skew == {}


@pytest.mark.parametrize("lie", ["v2-year-1", "v1-year-9999"])
def test_replay_catches_the_rollout_whatever_one_event_claims(replayed: Any,
                                                              lie: ClockLie) -> None:
    caught, incidents, stats = replayed[lie]
    ordinary, ordinary_incidents, _ = replayed[None]
    assert caught == ordinary
    assert len(incidents) == len(ordinary_incidents) == 1
    assert stats.valid == N_V1 + N_V2
    assert dict(stats.clock_skew) == {"behind" if lie == "v2-year-1" else "ahead": 1}


@pytest.mark.parametrize("lie", ["v2-year-1", "v1-year-9999"])
def test_collector_catches_the_rollout_whatever_one_event_claims(lie: ClockLie) -> None:
    caught, metrics, store = collect_rollout(lie)
    ordinary, ordinary_metrics, _ = collect_rollout(None)
    assert ordinary and caught == ordinary
    skew = metrics.clock_skew
    assert (skew.labels("behind")._value.get(), skew.labels("ahead")._value.get()) == (
        (1.0, 0.0) if lie == "v2-year-1" else (0.0, 1.0))
    assert ordinary_metrics.clock_skew.labels("behind")._value.get() == 0.0
    # nothing the store orders by comes from the lie: incidents are dated by the broker
    opened = [i.opened_at.year for i in store.list_incidents(limit=1000)]
    assert opened and set(opened) == {datetime.now(UTC).year}
