"""Metrics follow partition ownership (issue 28, item 3), with two collectors in one group.

A member paused past the session timeout loses its partitions to the other; when it comes back
the group splits them again. Before, a member kept exporting ``driftscope_consumer_lag_messages``
for partitions it no longer owned, frozen at their last value: after the takeover the group was
caught up while the exported lag summed to thousands, and ``DriftscopeConsumerLagHigh`` paged.
Invariants: each partition's lag is exported by exactly one member, the exported sum is the
group's real lag within one lag measurement, in each collector's ``/metrics`` and in
Prometheus scraping both; the alert's condition stays false (the rule itself:
deploy/prometheus/tests/alerts.test.yml, "after a rebalance ...").
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from driftscope_llm.services.bus.kafka import consumer_lag
from driftscope_llm.services.bus.settings import KafkaSettings
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from tests.collector_harness import SMALL_WINDOWS, CollectorProcess, checkpoint_totals, produce
from tests.stack import Prometheus

pytestmark = pytest.mark.slow

PARTITIONS = 4
SESSION_TIMEOUT_S = 10  # kafka-python's default: how long the group waits for a paused member
LAG_EVERY_S = 5  # the consumer loop's lag measurement (services/bus/loop.py)
# lag is what is measured here, not detection: the refusal rate alone keeps the members cheap
CONFIG = {**SMALL_WINDOWS, "drift": {**SMALL_WINDOWS["drift"], "signals": {"refusal": {
    "kind": "boolean", "detectors": ["two_proportion"], "min_effect": 0.02}}}}
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def exported_lag(c: CollectorProcess, topic: str) -> dict[int, float]:
    """Partition -> the lag this collector exports for ``topic``."""
    out = {}
    for name, value in c.metrics().items():
        if name.startswith("driftscope_consumer_lag_messages{"):
            labels = dict(_LABEL.findall(name))
            if labels["topic"] == topic:
                out[int(labels["partition"])] = value
    return out


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """The group's real lag on ``topic``: log end minus committed offset, over its partitions."""
    lags = consumer_lag(KafkaSettings(bootstrap_servers=bootstrap), [group])[group]
    return sum(g.lag for g in lags if g.topic == topic)


def lag_follows_ownership(members: list[CollectorProcess], topic: str, bootstrap: str,
                          group: str, *, timeout: float) -> tuple[list[dict[int, float]], int]:
    """Wait until every member owns partitions, their exported lags cover every partition
    exactly once and sum to the group's real lag; the exports and that lag (AssertionError with
    both after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        exports = [exported_lag(c, topic) for c in members]
        real = group_lag(bootstrap, group, topic)
        owned = [p for e in exports for p in e]
        if all(exports) and sorted(owned) == list(range(PARTITIONS)) and sum(
                sum(e.values()) for e in exports) == real:
            return exports, real
        if time.monotonic() > deadline:
            raise AssertionError(f"exported lag {exports} against the group's real lag {real}")
        time.sleep(0.5)


def test_lag_is_exported_by_the_owner_only_after_a_takeover(
    kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    redis_client: redis.Redis, prometheus: Prometheus, tmp_path: Path,
) -> None:
    topic = new_topic(partitions=PARTITIONS)
    group = f"g-{topic}"
    n = produce(kafka_bootstrap, topic, generate_events(StreamSpec(n=12_000, seed=5)),
                key=None)  # unkeyed: spread over the four partitions
    a = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, config=CONFIG,
                         group_id=group).start()
    b = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, config=CONFIG,
                         group_id=group)
    try:
        # a owns all four partitions and exports their lag while it still has some
        deadline = time.monotonic() + 120
        while not (len(lag := exported_lag(a, topic)) == PARTITIONS and all(lag.values())):
            assert time.monotonic() < deadline, f"a never exported lag on all partitions: {lag}"
            time.sleep(0.05)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)  # past the session timeout: b takes everything
        frozen = lag
        b.start()
        deadline = time.monotonic() + 180
        while checkpoint_totals(redis_client, topic) < n:
            assert time.monotonic() < deadline, b.log_text()
            time.sleep(1)
        time.sleep(SESSION_TIMEOUT_S)
        a.proc.send_signal(signal.SIGCONT)  # a rejoins; the group splits the partitions again

        _, real = lag_follows_ownership([a, b], topic, kafka_bootstrap, group,
                                        timeout=2 * LAG_EVERY_S + SESSION_TIMEOUT_S + 60)
        assert real == 0
        assert sum(frozen.values()) > 0  # what a would still export, before the fix

        for c in (a, b):
            prometheus.register_target(f"127.0.0.1:{c.metrics_port}", {"test": topic})
        series = f'driftscope_consumer_lag_messages{{test="{topic}",topic="{topic}"}}'
        prometheus.wait_for(f"count({series})", timeout=30,
                            until=lambda r: bool(r) and float(r[0]["value"][1]) == PARTITIONS)
        total = prometheus.query(f"sum({series})")
        assert float(total[0]["value"][1]) == real
        # DriftscopeConsumerLagHigh's condition (the rule sums by topic)
        assert prometheus.query(f"sum by (topic) ({series}) > 10000") == []
        assert checkpoint_totals(redis_client, topic) == n
    finally:
        if a.proc is not None and a.proc.poll() is None:
            a.proc.send_signal(signal.SIGCONT)
        for c in (a, b):
            c.stop()
