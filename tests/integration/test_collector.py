"""The collector against the real broker and Redis: detection, dead letters, crashes."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from tests.collector_harness import (
    CollectorProcess,
    checkpoint_totals,
    consume_all,
    incidents,
    produce,
)

REFUSAL_SPIKE = Drift(start=2400, route="billing", refusal_rate=0.30)


def _billing_refusal(incident: dict[str, Any]) -> bool:
    return any(f["segment"] == "billing" and f["signal"] == "refusal"
               for f in incident.get("facets", []))


def test_planted_drift_opens_incident_and_clean_stream_does_not(
    kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    redis_client: redis.Redis, tmp_path: Path,
) -> None:
    drifting, clean = new_topic(partitions=2), new_topic(partitions=2)
    n = produce(kafka_bootstrap, drifting,
                generate_events(StreamSpec(n=4800, drifts=(REFUSAL_SPIKE,), seed=1)))
    produce(kafka_bootstrap, clean, generate_events(StreamSpec(n=4800, seed=2)))

    c = CollectorProcess(kafka_bootstrap, redis_url, drifting, tmp_path, group_id="g-drift")
    c.start(max_idle=8)
    deadline = time.monotonic() + 240
    while checkpoint_totals(redis_client, drifting) < n and time.monotonic() < deadline:
        time.sleep(1)
    metrics = c.metrics()
    assert c.wait_exit() == 0, c.log_text()

    assert checkpoint_totals(redis_client, drifting) == n
    found = incidents(redis_client)
    refusal = [i for i in found if _billing_refusal(i)]
    assert refusal, f"no refusal incident: {[(i['segment'], i['signal']) for i in found]}"
    # one change, one incident: billing's stream and the model-level stream are its facets
    assert len(found) == 1
    assert {f["segment"] for f in found[0]["facets"]} <= {"billing", "all"}
    assert all(i["model"] == "support-bot" and i["exemplars"] for i in refusal)
    assert any("sorry" in (e["output"] or "") for i in refusal for e in i["exemplars"])
    anomalies = [json.loads(m.value) for m in consume_all(kafka_bootstrap, f"{drifting}.anomalies")]
    assert {a["incident_id"] for a in anomalies} >= {i["id"] for i in refusal}
    alarms = {k: v for k, v in metrics.items()
              if k.startswith("driftscope_anomalies_total") and 'signal="refusal"' in k and v > 0}
    assert alarms and all('segment="billing"' in k or 'segment="all"' in k for k in alarms)
    assert sum(v for k, v in alarms.items() if 'segment="billing"' in k) >= 1
    assert metrics[f'driftscope_events_consumed_total{{topic="{drifting}"}}'] == n

    redis_client.flushdb()
    c2 = CollectorProcess(kafka_bootstrap, redis_url, clean, tmp_path, group_id="g-clean")
    c2.start(max_idle=8)
    assert c2.wait_exit() == 0, c2.log_text()
    assert checkpoint_totals(redis_client, clean) == 4800
    assert [(i["segment"], i["signal"], i["detector"], i["effect_size"])
            for i in incidents(redis_client)] == []
    assert consume_all(kafka_bootstrap, f"{clean}.anomalies", idle_ms=1500) == []


BAD_MESSAGES: list[tuple[bytes, str]] = [
    (b"this is not json", "not_json"),
    (b"\x00\xff\xfe", "not_json"),
    (b"[1,2,3]", "not_object"),
    (b'{"event_id":"x1","ts":"2026-11-28T10:00:00Z","model":"m"}', "missing_field"),
    (b'{"event_id":"x2","ts":"2026-11-28T10:00:00Z","model":7,"output":"o"}', "wrong_type"),
    (b'{"event_id":"x3","ts":"2026-11-28T10:00:00Z","model":"m","output":"o",'
     b'"token_logprobs":[-0.2,NaN]}', "non_finite"),
    (b'{"event_id":"x4","ts":"2026-11-28T10:00:00Z","model":"m","output":"o",'
     b'"token_logprobs":[Infinity]}', "non_finite"),
    (b'{"event_id":"x5","ts":"2026-11-28T10:00:00Z","model":"m","output":"' + b"a" * 5000 + b'"}',
     "too_large"),
    (b'{"event_id":"x6","ts":"2026-11-28T10:00:00Z","model":"m","output":"o","confidence":3}',
     "invalid_value"),
]


def test_every_invalid_message_reaches_the_dead_letter_topic(
    kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    redis_client: redis.Redis, tmp_path: Path,
) -> None:
    topic = new_topic(partitions=1)
    valid = list(generate_events(StreamSpec(n=600, seed=3)))
    mixed: list[dict[str, object] | bytes] = []
    for i, ev in enumerate(valid):
        mixed.append(ev)
        if i % 60 == 0:
            mixed.append(BAD_MESSAGES[(i // 60) % len(BAD_MESSAGES)][0])
    bad_sent = sum(isinstance(m, bytes) for m in mixed)
    produce(kafka_bootstrap, topic, mixed)
    cfg = {**CollectorProcess.__dataclass_fields__["config"].default_factory(),  # type: ignore[misc]
           "max_event_bytes": 4096}
    c = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, config=cfg, group_id="g-bad")
    c.start(max_idle=6)
    metrics_before_exit = None
    deadline = time.monotonic() + 120
    while checkpoint_totals(redis_client, topic) < len(valid) and time.monotonic() < deadline:
        time.sleep(0.5)
    metrics_before_exit = c.metrics()
    assert c.wait_exit() == 0, c.log_text()

    assert checkpoint_totals(redis_client, topic) == len(valid)
    letters = [json.loads(m.value) for m in consume_all(kafka_bootstrap, f"{topic}.dlq")]
    assert len(letters) == bad_sent
    sent_bad = [m for m in mixed if isinstance(m, bytes)]
    expected = {raw: reason for raw, reason in BAD_MESSAGES}
    by_offset = sorted(letters, key=lambda x: x["source_offset"])
    for letter, raw in zip(by_offset, sent_bad, strict=True):
        assert base64.b64decode(letter["raw_b64"]) == raw
        assert letter["reason"] == expected[raw]
        assert letter["source_topic"] == topic and letter["source_partition"] == 0
    invalid = {k: v for k, v in metrics_before_exit.items()
               if k.startswith("driftscope_events_invalid_total")}
    assert sum(invalid.values()) == bad_sent


def test_sigkill_mid_stream_loses_nothing_and_counts_once(
    kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    redis_client: redis.Redis, tmp_path: Path,
) -> None:
    topic = new_topic(partitions=2)
    n = produce(kafka_bootstrap, topic,
                generate_events(StreamSpec(n=6000, drifts=(Drift(start=3600, route="billing",
                                                                refusal_rate=0.30),), seed=4)))
    first = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, group_id="g-crash")
    first.start()
    deadline = time.monotonic() + 120
    while checkpoint_totals(redis_client, topic) < 1500 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()
    at_kill = checkpoint_totals(redis_client, topic)
    assert 0 < at_kill < n, "kill must land mid-stream"

    second = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, group_id="g-crash")
    second.start(max_idle=8)
    assert second.wait_exit() == 0, second.log_text()
    assert checkpoint_totals(redis_client, topic) == n
    refusal = [i for i in incidents(redis_client) if _billing_refusal(i)]
    assert refusal


def test_two_replicas_in_one_group_raise_what_one_raises(
    kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    redis_client: redis.Redis, tmp_path: Path,
) -> None:
    """Scale-out: partitions split between replicas; streams keyed by route stay whole."""
    events = list(generate_events(StreamSpec(
        n=4800, seed=11, drifts=(Drift(start=2400, route="billing", refusal_rate=0.30),
                                 Drift(start=2400, route="tech", length_factor=2.0)))))

    def run(replicas: int) -> set[tuple[str, str, str, str]]:
        topic = new_topic(partitions=4)
        produce(kafka_bootstrap, topic, events, key_by_route=True)
        redis_client.flushdb()
        procs = [CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path,
                                  group_id=f"g-scale-{replicas}") for _ in range(replicas)]
        for p in procs:
            p.start(max_idle=10)
        for p in procs:
            assert p.wait_exit() == 0, p.log_text()
        assert checkpoint_totals(redis_client, topic) == len(events)
        # facets, not incident ids: which facet's anomaly reached Redis first (and so named the
        # incident) depends on the replicas' timing; what each stream raised does not
        return {(f["segment"], f["signal"], f["detector"], f["first_event_id"])
                for i in incidents(redis_client) for f in i["facets"]}

    one, two = run(1), run(2)
    assert one, "the planted drifts raised nothing"
    assert {"billing", "tech"} <= {s for s, *_ in one} <= {"billing", "tech", "all"}
    assert two == one
