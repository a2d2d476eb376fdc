"""OTLP on the input topic, as the OpenTelemetry Collector's Kafka exporter writes it, through a
real collector process, broker and Redis: every GenAI span counted once, the rest skipped or
dead-lettered with the span named, and planted drift detected — with no code of the user's."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import redis

from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from tests.collector_harness import (
    SMALL_WINDOWS,
    CollectorProcess,
    consume_all,
    incidents,
    produce,
)
from tests.fixtures.ingest.spans import (
    export_request,
    genai_span,
    http_span,
    ids_for,
    model_stream_totals,
    processed_total,
    to_otlp_json,
)

SPANS_PER_MESSAGE = 8


def test_otlp_messages_on_the_topic_are_counted_and_drift_is_detected(
    kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    redis_client: redis.Redis, tmp_path: Path,
) -> None:
    topic = new_topic(partitions=1)
    events = list(generate_events(StreamSpec(
        n=2400, drifts=(Drift(start=1200, route=None, refusal_rate=0.35),), seed=5)))
    messages: list[bytes] = []
    for i in range(0, len(events), SPANS_PER_MESSAGE):
        spans = [genai_span(e) for e in events[i:i + SPANS_PER_MESSAGE]]
        spans.insert(3, http_span(i))  # non-GenAI spans share the export, as in real traffic
        request = export_request(spans)
        # the exporter's two encodings on one topic: auto-detected per message
        messages.append(request.SerializeToString() if (i // SPANS_PER_MESSAGE) % 2 == 0
                        else to_otlp_json(request))
    bad_span = genai_span({**events[0], "event_id": "no-model"})
    kept = [kv for kv in bad_span.attributes if not kv.key.endswith(".model")]
    del bad_span.attributes[:]
    bad_span.attributes.extend(kept)
    messages.append(export_request([bad_span, http_span(-1)]).SerializeToString())
    truncated = export_request([genai_span(events[1])]).SerializeToString()[:-7]
    messages.append(truncated)
    # OpenAI-format records of another model on the same topic, as the emitter writes them
    chats = [json.dumps({"response": {
        "id": f"chatcmpl-{i}", "object": "chat.completion", "created": 1_780_000_000 + i,
        "model": "gpt-4o-mini-2024-07-18", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": f"Answer {i}."}}]},
        "request": {"model": "gpt-4o-mini"}}).encode() for i in range(40)]
    messages[10:10] = chats
    produce(kafka_bootstrap, topic, messages)

    config = {**SMALL_WINDOWS, "segments": {}}  # defaults: one stream per model and version
    c = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, config=config,
                         group_id="g-otlp")
    c.start(max_idle=8)
    deadline = time.monotonic() + 240
    expected = len(events) + len(chats)
    while model_stream_totals(redis_client, topic) < expected and time.monotonic() < deadline:
        time.sleep(1)
    metrics = c.metrics()
    assert c.wait_exit() == 0, c.log_text()

    # each GenAI span and each OpenAI record observed exactly once; nothing else
    assert model_stream_totals(redis_client, topic) == len(events) + len(chats)
    assert processed_total(metrics) == len(events) + len(chats)
    assert metrics['driftscope_events_processed_total{model="gpt-4o-mini",'
                   'model_version="gpt-4o-mini-2024-07-18",segment="all"}'] == len(chats)
    assert metrics[f'driftscope_events_consumed_total{{topic="{topic}"}}'] == len(messages)
    skipped = sum(v for k, v in metrics.items()
                  if k.startswith("driftscope_ingest_skipped_total{") and "not_genai" in k)
    assert skipped == len(messages) - len(chats) - 1  # an HTTP span per export; truncated: none

    letters = [json.loads(m.value) for m in consume_all(kafka_bootstrap, f"{topic}.dlq")]
    by_reason = {letter["reason"]: letter for letter in letters}
    assert sorted(by_reason) == ["missing_model", "otlp_invalid"], letters
    trace_id, span_id = ids_for("no-model")
    assert f"span {trace_id.hex()}:{span_id.hex()}" in by_reason["missing_model"]["detail"]
    assert base64.b64decode(by_reason["otlp_invalid"]["raw_b64"]) == truncated

    found = incidents(redis_client)
    # one change, one incident: support-bot v1's refusal rise (none for the OpenAI records)
    assert [(i["model"], i["model_version"], i["segment"]) for i in found] == [
        ("support-bot", "v1", "all")], found
    facets = {(f["signal"], f["detector"]) for f in found[0]["facets"]}
    assert found[0]["signal"] == "refusal", facets  # the headline
    # refusals are short answers: length may ride along; nothing else changed
    assert {sig for sig, _ in facets} <= {"refusal", "length_chars", "length_tokens"}, facets
    assert any("sorry" in (e["output"] or "") for e in found[0]["exemplars"])
