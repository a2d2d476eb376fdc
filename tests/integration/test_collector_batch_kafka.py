"""The batched collector on the real broker and Redis raises what the event-by-event path does.

A topic holds a rollout with a refusal spike and a few poison messages. The collector (its
consumer on :class:`ConsumerSettings` with small polls, so the stream crosses many batches)
consumes it into Redis; the same bytes go through the event-by-event path in-process. The
checkpoint the collector wrote (every monitor's state, totals, exemplar rings), the anomaly
events it published and its dead letters are compared with that reference.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import redis
from prometheus_client import CollectorRegistry

from driftscope_llm.services.bus import TopicSettings
from driftscope_llm.services.bus.kafka import KafkaBus
from driftscope_llm.services.bus.settings import ConsumerSettings, KafkaSettings
from driftscope_llm.services.collector.batch import process_batch
from driftscope_llm.services.collector.metrics import CollectorMetrics
from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline
from driftscope_llm.services.collector.service import Collector
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.config import SegmentSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.store import MemoryStore
from driftscope_llm.services.store.redis_store import RedisStore
from tests.collector_harness import consume_all, produce

SMALL = DriftSettings(reference_size=400, min_reference_values=100, window_size=200,
                      min_window=50, test_every=25, cooldown_events=200)
ROUTES = SegmentSettings(label="route", allowed=["billing", "shipping", "account", "tech"])


def _records() -> list[bytes]:
    v1 = generate_events(StreamSpec(n=1200, seed=21, model_version="v1"))
    v2 = generate_events(StreamSpec(n=1800, seed=22, model_version="v2", drifts=(
        Drift(start=600, route="billing", refusal_rate=0.6),)))
    raw = [json.dumps(e).encode() for e in [*v1, *v2]]
    for at, poison in ((10, b"{oops"), (1500, b'{"event_id": "x"}'), (2500, b"[1e999]")):
        raw.insert(at, poison)
    return raw


def test_batched_collector_on_kafka_matches_the_event_by_event_path(
        kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str) -> None:
    raw = _records()
    topic = new_topic()
    produce(kafka_bootstrap, topic, raw)

    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, key_prefix=f"batch-{uuid.uuid4().hex[:6]}:")
    pipeline = Pipeline(SMALL, SignalExtractor(SignalSettings()), ROUTES, store)
    bus = KafkaBus(KafkaSettings(bootstrap_servers=kafka_bootstrap),
                   group_id=f"batch-{uuid.uuid4().hex[:6]}",
                   consumer=ConsumerSettings(max_poll_records=250))
    topics = TopicSettings(outputs=topic, dead_letter=f"{topic}.dlq",
                           anomalies=f"{topic}.anomalies")
    Collector(pipeline, store, CollectorMetrics(CollectorRegistry()), bus, topics,
              checkpoint_every=1000).run(max_idle_s=2.0)
    saved = store.load_checkpoint(topic, 0)
    client.close()

    reference = Pipeline(SMALL, SignalExtractor(SignalSettings()), ROUTES, MemoryStore())
    state = PartitionState(topic=topic, partition=0)
    out = process_batch(reference, state, list(enumerate(raw)), max_bytes=1_000_000,
                       batched=False)
    expected = state.to_checkpoint(datetime.now(UTC))

    assert saved is not None and saved.next_offset == len(raw)
    assert saved.totals == expected.totals
    assert saved.monitors == json.loads(json.dumps(expected.monitors))
    assert {r.anomaly.signal for r in out.raised} >= {"refusal"}
    published = [json.loads(m.value) for m in consume_all(kafka_bootstrap, topics.anomalies)]
    assert [(p["event_id"], p["signal"], p["detector"], p["segment"]) for p in published] == [
        (r.anomaly.event_id, r.anomaly.signal, r.anomaly.detector, r.anomaly.key.segment)
        for r in out.raised]
    letters = [json.loads(m.value) for m in consume_all(kafka_bootstrap, topics.dead_letter)]
    assert [(d["source_offset"], d["reason"]) for d in letters] == [
        (r.offset, r.reason) for r in out.rejected] == [
        (10, "not_json"), (1500, "missing_field"), (2500, "non_finite")]
