"""The lag a collector exports follows the partitions it owns (issue 28, item 3), on the
in-memory bus. On 44e8acf a revoked partition's ``driftscope_consumer_lag_messages`` series
stayed at its last value for good. The same with two real collectors and Prometheus:
tests/integration/test_rebalance_metrics.py."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry

from driftscope_llm.services.bus import MemoryBroker, Partition, TopicSettings
from driftscope_llm.services.collector.metrics import CollectorMetrics
from driftscope_llm.services.collector.pipeline import Pipeline
from driftscope_llm.services.collector.service import Collector
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.config import SegmentSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.store import MemoryStore

TOPICS = TopicSettings(outputs="in", dead_letter="in.dlq", anomalies="anomalies")
EVENT = {"ts": "2026-12-01T10:00:00Z", "model": "m", "output": "fine"}


def lag_series(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {(s.labels["topic"], s.labels["partition"]): s.value
            for metric in registry.collect() if metric.name == "driftscope_consumer_lag_messages"
            for s in metric.samples}


def member() -> tuple[Collector, CollectorRegistry, MemoryBroker]:
    broker = MemoryBroker(partitions=2)
    for i in range(10):
        broker.append("in", json.dumps({**EVENT, "event_id": f"e{i}"}).encode(),
                      partition=i % 2)
    registry = CollectorRegistry()
    store = MemoryStore()
    pipeline = Pipeline(DriftSettings(), SignalExtractor(SignalSettings()), SegmentSettings(),
                        store)
    collector = Collector(pipeline, store, CollectorMetrics(registry), broker.member("c"),
                          TOPICS)
    return collector, registry, broker


def test_a_revoked_partition_takes_its_lag_series_with_it() -> None:
    collector, registry, _ = member()
    collector._acquire([Partition("in", 0), Partition("in", 1)])
    collector.on_lag({Partition("in", 0): 1200, Partition("in", 1): 7})
    assert lag_series(registry) == {("in", "0"): 1200.0, ("in", "1"): 7.0}
    collector._release([Partition("in", 0)])
    assert lag_series(registry) == {("in", "1"): 7.0}


def test_lag_is_exported_only_for_partitions_owned() -> None:
    collector, registry, _ = member()
    collector._acquire([Partition("in", 1)])
    collector.on_lag({Partition("in", 0): 50, Partition("in", 1): 3})  # 0 is not ours
    assert lag_series(registry) == {("in", "1"): 3.0}
    collector.on_lag({})  # a measurement without partition 1 (it moved): its series ends
    assert lag_series(registry) == {}


def test_a_whole_run_ends_with_the_lag_of_what_it_owns() -> None:
    collector, registry, broker = member()
    collector.run(max_idle_s=0.0)
    assert lag_series(registry) == {("in", "0"): 0.0, ("in", "1"): 0.0}
    assert broker.end_offset(Partition("in", 0)) == 5
