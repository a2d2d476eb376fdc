"""Poison messages against the real broker and Redis (issue 19, failure 1).

On ec31e46 the collector exited 1 on each of these messages with nothing checkpointed — the 200
valid events before it in the same batch were not counted — and exited again on every restart,
so the partition was stuck and nothing reached the dead-letter topic. Now each poison message is
dead-lettered with its reason and exact bytes, every valid event is counted once, the checkpoint
moves past the whole topic, and a second collector on the same group finds nothing left to do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import redis

from driftscope_llm.services.collector.batch import MAX_DEAD_LETTER_RAW
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from tests.collector_harness import CollectorProcess, consume_all, produce

HEAD = b'{"event_id":"p%d","ts":"2026-11-28T10:00:00Z","model":"m",'
POISON: list[tuple[bytes, str]] = [
    (HEAD % 1 + b'"output":"o","metadata":' + b"[" * 5000 + b"]" * 5000 + b"}", "too_deep"),
    (HEAD % 2 + b'"output":"o","latency_ms":' + b"9" * 5000 + b"}", "too_large"),
    (HEAD % 3 + b'"output":"\\ud800"}', "invalid_text"),
    (HEAD % 4 + b'"output":"o","top_logprobs":[{"a":0.9}]}', "invalid_value"),
    (b"1e999", "non_finite"),
    # invalid, and too big for its own dead letter to carry whole: the letter keeps the head
    (b"[" + b" " * 900_000 + b"1", "not_json"),
]


def _checkpoint(client: redis.Redis, topic: str) -> dict[str, object]:
    raw = client.get(f"driftscope:cp:{topic}:0")
    assert raw is not None, "no checkpoint written"
    data: dict[str, object] = json.loads(raw)
    return data


def _processed(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("driftscope_events_processed_total"))


def test_poison_in_a_batch_is_dead_lettered_and_the_valid_events_are_counted_once(
    kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    redis_client: redis.Redis, tmp_path: Path,
) -> None:
    topic = new_topic(partitions=1)
    valid = list(generate_events(StreamSpec(n=600, seed=19)))
    mixed: list[dict[str, object] | bytes] = [*valid[:200]]
    for raw, _ in POISON:  # all inside the first poll batch (max_poll_records=500)
        mixed.append(raw)
    mixed.extend(valid[200:])
    produce(kafka_bootstrap, topic, mixed)

    c = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, group_id="g-poison")
    c.start(max_idle=6)
    deadline = time.monotonic() + 120
    while (redis_client.get(f"driftscope:cp:{topic}:0") is None
           or _checkpoint(redis_client, topic)["next_offset"] != len(mixed)) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    metrics = c.metrics()
    assert c.wait_exit() == 0, c.log_text()

    assert _checkpoint(redis_client, topic)["next_offset"] == len(mixed)
    assert _processed(metrics) == len(valid)
    letters = sorted((json.loads(m.value) for m in consume_all(kafka_bootstrap, f"{topic}.dlq")),
                     key=lambda x: x["source_offset"])
    assert [(x["source_offset"], x["reason"]) for x in letters] == [
        (200 + i, reason) for i, (_, reason) in enumerate(POISON)]
    for letter, (raw, _) in zip(letters, POISON, strict=True):
        assert letter["raw_bytes"] == len(raw)
        assert letter["raw_sha256"] == hashlib.sha256(raw).hexdigest()
        assert base64.b64decode(letter["raw_b64"]) == raw[:MAX_DEAD_LETTER_RAW]
        assert letter["raw_truncated"] is (len(raw) > MAX_DEAD_LETTER_RAW)
    invalid = {k: v for k, v in metrics.items() if k.startswith("driftscope_events_invalid_total")}
    assert sum(invalid.values()) == len(POISON)

    # a restart on the same group resumes after the poison: nothing replayed, nothing stuck
    again = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, group_id="g-poison")
    again.start(max_idle=4)
    assert again.wait_exit() == 0, again.log_text()
    assert _checkpoint(redis_client, topic)["next_offset"] == len(mixed)
    assert len(consume_all(kafka_bootstrap, f"{topic}.dlq", idle_ms=1500)) == len(POISON)


def test_distinct_models_per_event_fold_into_other_and_metrics_stay_bounded(
    kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    redis_client: redis.Redis, tmp_path: Path,
) -> None:
    """On ec31e46, 10,000 distinct ``model`` values gave 10,000 streams and a 135 MB /metrics;
    here 400 distinct models, capped at 5, give 5 named models and ``other``."""
    topic = new_topic(partitions=1)
    events = list(generate_events(StreamSpec(n=400, seed=23)))
    for i, ev in enumerate(events):
        ev["model"] = f"req-{i:04d}"
    produce(kafka_bootstrap, topic, events)
    config = {"checkpoint_every": 100, "cardinality": {"max_models": 5}}
    c = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, config=config,
                         group_id="g-caps")
    c.start(max_idle=6)
    deadline = time.monotonic() + 120
    while (redis_client.get(f"driftscope:cp:{topic}:0") is None
           or _checkpoint(redis_client, topic)["next_offset"] != len(events)) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    metrics = c.metrics()
    assert c.wait_exit() == 0, c.log_text()

    assert metrics['driftscope_streams_folded_total{kind="model",label=""}'] == len(events) - 5
    processed = {k for k in metrics if k.startswith("driftscope_events_processed_total")}
    models = {k.split('model="')[1].split('"')[0] for k in processed}
    assert models == {f"req-{i:04d}" for i in range(5)} | {"other"}
    assert _processed(metrics) == len(events)
    monitored = {sid.split("|")[0] for sid in _checkpoint(redis_client, topic)["streams"]}
    assert monitored == {f"req-{i:04d}" for i in range(5)} | {"other"}
