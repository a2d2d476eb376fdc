"""``driftscope ingest`` with real OpenTelemetry clients: the official SDK's OTLP/HTTP exporters
(protobuf and JSON) send GenAI spans to the receiver on loopback, the receiver produces them to
the real broker, and a real collector counts them and detects planted drift. Also the HTTP
contract: status codes, partial success, bounded bodies, bearer token."""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from opentelemetry.exporter.otlp.json.http.trace_exporter import (
    OTLPSpanExporter as JsonSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as ProtoSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from pydantic import SecretStr

from driftscope_llm.services.bus import KafkaSettings, TopicSettings
from driftscope_llm.services.bus.kafka import KafkaPublisher
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.config import IngestServiceSettings
from driftscope_llm.services.deployables import build_otlp_receiver
from driftscope_llm.services.ingest import RecordDecoder
from driftscope_llm.services.otlp_receiver.server import KafkaSink, OtlpReceiver
from driftscope_llm.services.otlp_receiver.settings import OtlpReceiverSettings
from tests.collector_harness import SMALL_WINDOWS, CollectorProcess, consume_all
from tests.fixtures.ingest.spans import (
    export_request,
    genai_attributes,
    genai_span,
    http_span,
    model_stream_totals,
    processed_total,
    span_times,
    to_otlp_json,
)
from tests.ingest_process import ingest_subprocess


def send_with_sdk(exporter: SpanExporter, events: list[dict[str, Any]], service: str) -> None:
    """Emit one GenAI span per event, plus an HTTP span every tenth, through the real SDK."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=256))
    tracer = provider.get_tracer("test.genai")
    for i, event in enumerate(events):
        start, end = span_times(event)
        span = tracer.start_span(f"chat {event['model']}", start_time=start,
                                 attributes=genai_attributes(event))
        span.end(end_time=end)
        if i % 10 == 0:
            tracer.start_span("GET /health", attributes={"http.request.method": "GET"}).end()
    assert provider.force_flush(60_000)
    provider.shutdown()


@pytest.fixture
def ingest_process(kafka_bootstrap: str, new_topic: Callable[..., str],
                   tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``driftscope ingest`` as a subprocess; yields (traces URL, output topic)."""
    topic = new_topic(partitions=1)
    with ingest_subprocess(kafka_bootstrap, topic, tmp_path) as (port, log):
        yield f"http://127.0.0.1:{port}/v1/traces", topic
    assert "OTLP/HTTP receiver on" in log.read_text()


def test_sdk_exporters_to_receiver_to_collector_detect_drift(
    ingest_process: tuple[str, str], kafka_bootstrap: str, redis_url: str,
    redis_client: redis.Redis, tmp_path: Path,
) -> None:
    url, topic = ingest_process
    events = list(generate_events(StreamSpec(
        n=2000, drifts=(Drift(start=1000, route=None, refusal_rate=0.35),), seed=11)))
    half = len(events) // 2
    send_with_sdk(ProtoSpanExporter(endpoint=url), events[:half], "support-app")
    send_with_sdk(JsonSpanExporter(endpoint=url, compression=None), events[half:],
                  "support-app")

    config = {**SMALL_WINDOWS, "segments": {}}
    c = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, config=config,
                         group_id="g-otlp-http")
    c.start(max_idle=8)
    deadline = time.monotonic() + 240
    while model_stream_totals(redis_client, topic) < len(events) and time.monotonic() < deadline:
        time.sleep(1)
    metrics = c.metrics()
    assert c.wait_exit() == 0, c.log_text()
    assert processed_total(metrics) == len(events)  # driftscope_events_processed_total
    records = consume_all(kafka_bootstrap, topic)
    assert len(records) == len(events)  # every GenAI span, no HTTP span
    assert {r.key for r in records} == {b"support-bot"}  # keyed by model
    produced = [json.loads(r.value) for r in records]
    assert produced[0]["model_version"] == "v1" and produced[0]["segment"] == {
        "service.name": "support-app"}
    found = [json.loads(redis_client.get(k) or b"{}")
             for k in redis_client.scan_iter("driftscope:incident:*")]
    refusal = [i for i in found if i.get("signal") == "refusal"]
    assert refusal, f"no refusal incident: {[(i.get('signal'), i.get('detector')) for i in found]}"
    assert all(i["model"] == "support-bot" for i in refusal)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


@pytest.fixture
def receiver(kafka_bootstrap: str, new_topic: Callable[..., str]
             ) -> Iterator[tuple[OtlpReceiver, str]]:
    """An in-process receiver with a bearer token and a small body limit, on the real broker."""
    topic = new_topic(partitions=1)
    settings = IngestServiceSettings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        topics=TopicSettings(outputs=topic, dead_letter=f"{topic}.dlq"),
        receiver=OtlpReceiverSettings(port=0, max_body_bytes=64 * 1024,
                                      bearer_token=SecretStr("s3cret")))
    built = build_otlp_receiver(settings)  # what `driftscope ingest` runs
    rx = built.component.start()
    yield rx, topic
    rx.stop()
    built.close()


AUTH = {"Authorization": "Bearer s3cret"}
PROTO = {"Content-Type": "application/x-protobuf", **AUTH}


def mixed_request(events: list[dict[str, Any]]) -> Any:
    no_model = genai_span({**events[0], "event_id": "no-model"})
    kept = [kv for kv in no_model.attributes if not kv.key.endswith(".model")]
    del no_model.attributes[:]
    no_model.attributes.extend(kept)
    return export_request([*(genai_span(e) for e in events), http_span(1), no_model])


def test_partial_success_keeps_valid_spans_and_dead_letters_the_rest(
    receiver: tuple[OtlpReceiver, str], kafka_bootstrap: str,
) -> None:
    rx, topic = receiver
    events = list(generate_events(StreamSpec(n=5, seed=3)))
    request = mixed_request(events)
    status, body, _ = post(rx.url, gzip.compress(request.SerializeToString()),
                           {**PROTO, "Content-Encoding": "gzip"})
    assert status == 200
    response = ExportTraceServiceResponse.FromString(body)
    assert response.partial_success.rejected_spans == 1
    assert "missing_model" in response.partial_success.error_message
    status, body, _ = post(rx.url, to_otlp_json(request),
                           {"Content-Type": "application/json", **AUTH})
    assert status == 200
    assert json.loads(body)["partialSuccess"]["rejectedSpans"] == "1"
    produced = consume_all(kafka_bootstrap, topic)
    assert len(produced) == 2 * len(events)  # both requests' valid spans, nothing else
    letters = [json.loads(m.value) for m in consume_all(kafka_bootstrap, f"{topic}.dlq")]
    assert [letter["reason"] for letter in letters] == ["missing_model", "missing_model"]
    assert all(letter["source_topic"] == "otlp-http:/v1/traces" for letter in letters)


def test_error_codes(receiver: tuple[OtlpReceiver, str], kafka_bootstrap: str) -> None:
    rx, topic = receiver
    good = export_request([genai_span(e) for e in generate_events(StreamSpec(n=2, seed=4))])
    raw = good.SerializeToString()
    assert post(rx.url, raw, {"Content-Type": "application/x-protobuf"})[0] == 401
    assert post(rx.url, raw, {**PROTO, "Authorization": "Bearer wrong"})[0] == 401
    status, body, _ = post(rx.url, raw[:-5], PROTO)
    assert status == 400 and b"not an OTLP ExportTraceServiceRequest" in body
    status, body, _ = post(rx.url, raw, {"Content-Type": "text/plain", **AUTH})
    assert status == 415 and b"application/x-protobuf" in body
    assert post(rx.url, raw, {**PROTO, "Content-Encoding": "br"})[0] == 415
    assert post(rx.url.replace("/v1/traces", "/v1/metrics"), raw, PROTO)[0] == 404
    status, body, _ = post(rx.url.replace("/v1/traces", "/v1/logs"), raw, PROTO)
    assert status == 400 and b"not an OTLP ExportLogsServiceRequest" in body  # a trace export
    assert post(rx.url, b"x" * (65 * 1024), PROTO)[0] == 413
    bomb = gzip.compress(b"\x0a" + b"\x00" * (1024 * 1024))  # small on the wire, huge inflated
    assert post(rx.url, bomb, {**PROTO, "Content-Encoding": "gzip"})[0] == 413
    assert post(rx.url, b"not gzip", {**PROTO, "Content-Encoding": "gzip"})[0] == 400
    status, body, _ = post(rx.url, b"{not json", {"Content-Type": "application/json", **AUTH})
    assert status == 400 and json.loads(body)["code"] == 3
    assert post(rx.url, raw, PROTO)[0] == 200
    assert len(consume_all(kafka_bootstrap, topic)) == 2  # only the accepted request's spans


def test_kafka_unavailable_is_503_with_retry_after(kafka_bootstrap: str) -> None:
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=kafka_bootstrap,
                                             request_timeout_ms=2000),
                               timeout_s=3, max_block_ms=2000)
    # a topic name Kafka refuses: the send fails, so the receiver must not answer 200
    sink = KafkaSink(publisher, "bad topic name!", "bad topic name!.dlq")
    rx = OtlpReceiver(OtlpReceiverSettings(port=0), RecordDecoder(), sink).start()
    try:
        raw = export_request([genai_span(e) for e in generate_events(StreamSpec(n=1, seed=1))])
        status, _, headers = post(rx.url, raw.SerializeToString(),
                                  {"Content-Type": "application/x-protobuf"})
        assert status == 503 and headers.get("Retry-After") == "5"
    finally:
        rx.stop()
        publisher.close()
