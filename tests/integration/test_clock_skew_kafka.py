"""A client's clock cannot hide a rollout from the collector on the real broker and Redis
(issue 28, item 1; the same invariant through ``replay`` and the in-memory bus is
tests/unit/test_clock_skew.py).

v1 answers normally, then v2 refuses 30% of the time from its first event. Ordered by event
``ts``, v2's first event dated year 1 (or v1's dated year 9999) made v2 "first seen" before v1:
no reference to compare with, 0 anomalies. Ordered by what the broker observed, the lie changes
nothing: the same anomalies, one incident, and the lie counted in
``driftscope_events_clock_skew_total``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from driftscope_llm.services.collector.synthetic import ClockLie, rollout
from tests.collector_harness import (
    SMALL_WINDOWS,
    CollectorProcess,
    checkpoint_totals,
    consume_all,
    incidents,
    produce,
)

pytestmark = pytest.mark.slow

N_V1, N_V2 = 600, 600
# the refusal rate alone, tested by windows: what the rollout changes, cheaply
CONFIG = {**SMALL_WINDOWS, "drift": {**SMALL_WINDOWS["drift"], "signals": {"refusal": {
    "kind": "boolean", "detectors": ["two_proportion"], "min_effect": 0.02,
    "min_relative_effect": 0.5}}}}

Caught = list[tuple[str, str, str, str, str]]


def caught_on_kafka(bootstrap: str, topic: str, redis_url: str, client: redis.Redis,
                    workdir: Path, lie: ClockLie | None,
                    ) -> tuple[Caught, int, dict[str, float | None]]:
    """Produce the rollout (timestamps near now, one lie planted), run one collector over it
    until every event is checkpointed; what it caught, its incidents, its skew counters."""
    start = datetime.now(UTC) - timedelta(seconds=N_V1 + N_V2)
    n = produce(bootstrap, topic, rollout(N_V1, N_V2, lie=lie, start=start))
    c = CollectorProcess(bootstrap, redis_url, topic, workdir, config=CONFIG,
                         group_id=f"g-{topic}")
    c.start(max_idle=6)
    deadline = time.monotonic() + 240
    while checkpoint_totals(client, topic) < n and time.monotonic() < deadline:
        time.sleep(1)
    metrics = c.metrics()
    assert c.wait_exit() == 0, c.log_text()
    assert checkpoint_totals(client, topic) == n
    skew = {d: metrics.get(f'driftscope_events_clock_skew_total{{direction="{d}"}}')
            for d in ("behind", "ahead")}
    anomalies = [json.loads(m.value) for m in consume_all(bootstrap, f"{topic}.anomalies")]
    caught = sorted((a["event_id"], a["model_version"], a["segment"], a["signal"], a["detector"])
                    for a in anomalies)
    return caught, len(incidents(client)), skew


def test_a_lying_clock_hides_no_rollout_on_kafka(
    kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    redis_client: redis.Redis, tmp_path: Path,
) -> None:
    runs = {}
    for lie in (None, "v2-year-1", "v1-year-9999"):
        workdir = tmp_path / str(lie)
        workdir.mkdir()
        runs[lie] = caught_on_kafka(kafka_bootstrap, new_topic(), redis_url, redis_client,
                                    workdir, lie)
        redis_client.flushdb()  # same event ids, same incident ids: one run at a time

    ordinary, ordinary_incidents, ordinary_skew = runs[None]
    assert ordinary and {c[1] for c in ordinary} == {"v2"}
    assert any(c[3] == "refusal" for c in ordinary)
    assert ordinary_incidents == 1
    assert runs["v2-year-1"][:2] == (ordinary, 1)  # on 44e8acf: ([], 0)
    assert runs["v1-year-9999"][:2] == (ordinary, 1)
    assert ordinary_skew == {"behind": 0.0, "ahead": 0.0}
    assert runs["v2-year-1"][2] == {"behind": 1.0, "ahead": 0.0}
    assert runs["v1-year-9999"][2] == {"behind": 0.0, "ahead": 1.0}
