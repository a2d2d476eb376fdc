"""The receiver's back-pressure, as HTTP logic: with its concurrency limit reached a request gets
429 + Retry-After and nothing of it is delivered; once a slot frees, the retry is accepted. The
sink is a recording stand-in held on a gate (Kafka delivery is tested on the real broker in
tests/integration/test_otlp_receiver.py)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Sequence

from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from driftscope_llm.services.ingest import RecordDecoder
from driftscope_llm.services.otlp_receiver.server import OtlpReceiver
from driftscope_llm.services.otlp_receiver.settings import OtlpReceiverSettings
from driftscope_llm.services.schemas import DeadLetter, OutputEvent
from tests.fixtures.ingest.spans import export_request, genai_span


class GatedSink:
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.delivered: list[str] = []

    def send(self, events: Sequence[OutputEvent], rejects: Sequence[DeadLetter]) -> None:
        self.entered.set()
        assert self.gate.wait(30)
        self.delivered.extend(e.event_id for e in events)


def post(url: str, body: bytes) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers)


def test_requests_over_the_limit_get_429_and_deliver_nothing() -> None:
    sink = GatedSink()
    rx = OtlpReceiver(OtlpReceiverSettings(port=0, max_concurrent_requests=1, retry_after_s=2),
                      RecordDecoder(), sink).start()
    events = list(generate_events(StreamSpec(n=2, seed=9)))
    first = export_request([genai_span(events[0])]).SerializeToString()
    second = export_request([genai_span(events[1])]).SerializeToString()
    try:
        results: list[int] = []
        held = threading.Thread(target=lambda: results.append(post(rx.url, first)[0]))
        held.start()
        assert sink.entered.wait(30)  # the first request holds the only slot
        status, headers = post(rx.url, second)
        assert status == 429 and headers.get("Retry-After") == "2"
        sink.gate.set()
        held.join(30)
        assert results == [200]
        assert post(rx.url, second)[0] == 200  # the client's retry
        assert len(sink.delivered) == 2  # one span each from the accepted requests, no more
    finally:
        sink.gate.set()
        rx.stop()
