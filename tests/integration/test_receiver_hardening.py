"""The receivers under hostile clients, on loopback and the real broker (issue 28, failure 6).

On 44e8acf: a burst of 100 simultaneous connections had 74-82 of them reset (the stdlib's listen
backlog of 5); clients sending partial requests held a thread each forever (no read deadline);
one span over ~1 MB made Kafka refuse the batch, the receiver answer 503, and every retry
produce the good spans again; spans answered 503 were counted as events; an OTLP JSON attribute
nested 17 levels deep refused the whole request; a busy metrics port ended ``driftscope
collector`` with a traceback and exit 1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from driftscope_llm.services.alerts.receiver import AlertReceiver
from driftscope_llm.services.alerts.settings import AlertReceiverSettings
from driftscope_llm.services.bus.kafka import KafkaPublisher
from driftscope_llm.services.bus.settings import KafkaSettings
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from driftscope_llm.services.ingest import RecordDecoder
from driftscope_llm.services.otlp_receiver.server import KafkaSink, OtlpReceiver
from driftscope_llm.services.otlp_receiver.settings import OtlpReceiverSettings
from tests.collector_harness import consume_all
from tests.fixtures.ingest.spans import export_request, genai_span, to_otlp_json
from tests.stack import CLI_MODULE

REPO = Path(__file__).resolve().parents[2]
PROTO = {"Content-Type": "application/x-protobuf"}


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def burst(port: int, request: bytes, n: int = 100) -> tuple[int, int, list[int]]:
    """``n`` clients connect at the same instant and send ``request``: (answered, reset, the
    status codes). A connection refused, reset or cut before an answer counts as reset."""
    start = threading.Barrier(n)

    def one(_: int) -> int | None:
        start.wait()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(request)
                answer = b""
                while b"\r\n" not in answer:
                    chunk = s.recv(4096)
                    if not chunk:
                        return None
                    answer += chunk
                return int(answer.split(b" ", 2)[1])
        except OSError:
            return None

    with ThreadPoolExecutor(n) as pool:
        codes = list(pool.map(one, range(n)))
    answered = [c for c in codes if c is not None]
    return len(answered), n - len(answered), answered


@pytest.fixture
def topic_receiver(kafka_bootstrap: str, new_topic: Callable[..., str]
                   ) -> Iterator[tuple[OtlpReceiver, str]]:
    topic = new_topic(partitions=1)
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=kafka_bootstrap))
    rx = OtlpReceiver(OtlpReceiverSettings(port=0), RecordDecoder(),
                      KafkaSink(publisher, topic, f"{topic}.dlq")).start()
    yield rx, topic
    rx.stop()
    publisher.close()


def _events(n: int, seed: int) -> list[dict[str, Any]]:
    return list(generate_events(StreamSpec(n=n, seed=seed)))


def test_a_burst_of_100_connections_is_answered_without_resets(
        topic_receiver: tuple[OtlpReceiver, str], kafka_bootstrap: str) -> None:
    rx, topic = topic_receiver
    body = export_request([genai_span(_events(1, 1)[0])]).SerializeToString()
    request = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
               b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
               + body)
    answered, reset, codes = burst(rx.port, request)
    assert (answered, reset) == (100, 0)
    assert set(codes) <= {200, 429}  # 429: over max_concurrent_requests, an answer to retry
    assert len(consume_all(kafka_bootstrap, topic)) == codes.count(200)


def test_a_burst_of_100_connections_reaches_the_alert_receiver() -> None:
    settings = AlertReceiverSettings(port=0, bearer_token=SecretStr("a-bearer-token-long"))
    with AlertReceiver(settings, lambda message: None) as rx:
        answered, reset, codes = burst(
            rx.port, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (answered, reset) == (100, 0)
    assert set(codes) == {200}


def _partial(port: int, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(data)
    return s


def _answer_or_close(s: socket.socket) -> bytes:
    try:
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        return out
    except OSError:
        return b"<reset>"
    finally:
        s.close()


def test_slow_clients_get_408_and_release_their_threads() -> None:
    settings = OtlpReceiverSettings(port=0, header_timeout_s=1.0, body_timeout_s=1.0)

    class NoSink:
        def send(self, events: Any, rejects: Any) -> None:
            raise AssertionError("nothing of a partial request may be delivered")

    rx = OtlpReceiver(settings, RecordDecoder(), NoSink()).start()
    try:
        threads_before = threading.active_count()
        head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        partial_bodies = [_partial(rx.port, head + b"Content-Length: 1000\r\n\r\n" + b"\x0a" * 10)
                          for _ in range(150)]
        partial_headers = [_partial(rx.port, head + b"X-Slow: ") for _ in range(150)]
        time.sleep(0.5)
        for s in partial_headers[:50]:  # a byte now and then does not extend the deadline
            s.sendall(b"a")
        answers = [_answer_or_close(s) for s in partial_bodies + partial_headers]
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), \
            {a[:40] for a in answers}
        deadline = time.monotonic() + 10
        while threading.active_count() > threads_before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert threading.active_count() <= threads_before
        assert rx.metrics.requests.labels("408")._value.get() == 150  # the body timeouts
    finally:
        rx.stop()


def test_an_oversized_span_costs_that_span_alone(
        topic_receiver: tuple[OtlpReceiver, str], kafka_bootstrap: str) -> None:
    rx, topic = topic_receiver
    events = _events(3, 2)
    events[1]["output"] = "x" * 1_200_000  # the event alone is over max_event_bytes (1 MB)
    raw = export_request([genai_span(e) for e in events]).SerializeToString()
    for _ in range(3):  # the client's retries, had it been answered 503
        status, body = post(rx.url, raw, PROTO)
        assert status == 200
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )
    reply = ExportTraceServiceResponse.FromString(body)
    assert reply.partial_success.rejected_spans == 1
    assert "too_large" in reply.partial_success.error_message
    produced = [json.loads(m.value)["output"] for m in consume_all(kafka_bootstrap, topic)]
    assert produced == [events[0]["output"], events[2]["output"]] * 3  # once per request
    letters = [json.loads(m.value) for m in consume_all(kafka_bootstrap, f"{topic}.dlq")]
    assert [(d["reason"], d["raw_truncated"]) for d in letters] == [("too_large", True)] * 3
    assert rx.metrics.spans.labels("event")._value.get() == 6
    assert rx.metrics.spans.labels("rejected")._value.get() == 3


def test_spans_answered_503_are_not_counted(kafka_bootstrap: str) -> None:
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=kafka_bootstrap), timeout_s=3,
                               max_block_ms=2000)
    sink = KafkaSink(publisher, "bad topic name!", "bad topic name!.dlq")
    rx = OtlpReceiver(OtlpReceiverSettings(port=0), RecordDecoder(), sink).start()
    try:
        raw = export_request([genai_span(e) for e in _events(4, 3)]).SerializeToString()
        assert post(rx.url, raw, PROTO)[0] == 503
        assert rx.metrics.spans.labels("event")._value.get() == 0
        assert rx.metrics.requests.labels("503")._value.get() == 1
    finally:
        rx.stop()
        publisher.close()


def test_a_json_attribute_nested_17_deep_rejects_its_span_only(
        topic_receiver: tuple[OtlpReceiver, str], kafka_bootstrap: str) -> None:
    rx, topic = topic_receiver
    events = _events(2, 4)
    data = json.loads(to_otlp_json(export_request([genai_span(e) for e in events])))
    value: dict[str, Any] = {"stringValue": "x"}
    for _ in range(17):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["attributes"].append(
        {"key": "deep", "value": value})
    status, body = post(rx.url, json.dumps(data).encode(), {"Content-Type": "application/json"})
    assert status == 200
    assert json.loads(body)["partialSuccess"]["rejectedSpans"] == "1"
    produced = [json.loads(m.value)["output"] for m in consume_all(kafka_bootstrap, topic)]
    assert produced == [events[0]["output"]]


def test_a_busy_metrics_port_exits_2_with_one_line(kafka_bootstrap: str, redis_url: str,
                                                   tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        env = {"DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
               "DRIFTSCOPE_REDIS__URL": redis_url, "DRIFTSCOPE_METRICS__PORT": str(port),
               "DRIFTSCOPE_EMBEDDER__ENABLED": "false",
               "PYTHONWARNINGS": "ignore::DeprecationWarning"}
        done = subprocess.run([sys.executable, "-m", CLI_MODULE, "collector", "--max-idle", "1"],
                              env={**os.environ, **env}, cwd=REPO, capture_output=True,
                              text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"error: cannot serve metrics on 127.0.0.1:{port}" in done.stderr
