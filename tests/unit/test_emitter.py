"""The emitter's pure logic: a bounded queue that never blocks the caller, drops counted, what a
record holds, and the client proxies (sync, async, streamed) around a real ``openai`` client
talking to a loopback server. The producer here is a recording fake (Kafka is exercised in
tests/integration/test_emitter_kafka.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI

from driftscope_llm.services.ingest import RecordDecoder
from driftscope_llm.services.ingest.emitter import Emitter

COMPLETION = {
    "id": "chatcmpl-e1", "object": "chat.completion", "created": 1_780_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "Your refund is on its way."},
        "logprobs": {"content": [{"token": "Your", "logprob": -0.1, "bytes": None,
                                  "top_logprobs": []}]}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1_780_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


STREAM = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Refund "}),
          chunk({"content": "issued."}), chunk({}, "stop")]


class _Api(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("stream"):
            payload = "".join(f"data: {json.dumps(c)}\n\n" for c in STREAM) + "data: [DONE]\n\n"
            data, ctype = payload.encode(), "text/event-stream"
        else:
            data, ctype = json.dumps(COMPLETION).encode(), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


class RecordingProducer:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.delay_s = delay_s

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        time.sleep(self.delay_s)
        self.sent.append((topic, key, value))

    def flush(self, timeout: float | None = None) -> None:
        pass


def decoded(producer: RecordingProducer) -> list[Any]:
    return [ev for _, _, value in producer.sent
            for ev in RecordDecoder().decode_as("auto", value).events]


def test_wrapped_sync_client_emits_response_request_labels_and_latency(api_url: str) -> None:
    producer = RecordingProducer()
    emitter = Emitter(producer, "llm.outputs", segment={"route": "billing"},
                      model_version="ft-7")
    client = emitter.wrap(OpenAI(base_url=api_url, api_key="test"))
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Refund?"}], logprobs=True)
    assert answer.choices[0].message.content == "Your refund is on its way."  # untouched
    emitter.close()
    [(topic, key, _)] = producer.sent
    assert (topic, key) == ("llm.outputs", b"gpt-4o-mini")
    [ev] = decoded(producer)
    assert (ev.model, ev.model_version, ev.prompt) == ("gpt-4o-mini", "ft-7", "Refund?")
    assert ev.segment == {"route": "billing"} and ev.token_logprobs == [-0.1]
    assert ev.latency_ms is not None and ev.latency_ms > 0
    assert client.models is not None  # everything else passes through to the real client


def test_streamed_response_is_emitted_once_the_caller_consumed_it(api_url: str) -> None:
    producer = RecordingProducer()
    emitter = Emitter(producer)
    client = emitter.wrap(OpenAI(base_url=api_url, api_key="test"))
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=[{"role": "user", "content": "Status?"}])
    text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text == "Refund issued."
    emitter.close()
    [ev] = decoded(producer)
    assert (ev.output, ev.finish_reason, ev.prompt) == ("Refund issued.", "stop", "Status?")


def test_async_client_plain_and_streamed(api_url: str) -> None:
    producer = RecordingProducer()
    emitter = Emitter(producer)
    client = emitter.wrap_async(AsyncOpenAI(base_url=api_url, api_key="test"))

    async def calls() -> str:
        await client.chat.completions.create(model="gpt-4o-mini", messages=[])
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=[],
                                                      stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream])

    assert asyncio.run(calls()) == "Refund issued."
    emitter.close()
    assert sorted(ev.output for ev in decoded(producer)) == [
        "Refund issued.", "Your refund is on its way."]


def test_full_queue_drops_and_counts_and_never_blocks() -> None:
    gate = threading.Event()

    class Stuck(RecordingProducer):  # a broker that does not answer until released
        def send(self, topic: str, key: bytes, value: bytes) -> None:
            gate.wait()
            super().send(topic, key, value)

    producer = Stuck()
    emitter = Emitter(producer, max_queue=5)
    results: list[bool] = []
    caller = threading.Thread(target=lambda: results.extend(
        emitter.emit(COMPLETION) for _ in range(200)))
    caller.start()
    caller.join(timeout=30)
    assert not caller.is_alive(), "emit() blocked behind a stuck producer"
    accepted = sum(results)
    assert accepted <= 6  # the queue's 5, plus the one the sender thread holds
    assert accepted + emitter.dropped == 200
    gate.set()
    emitter.close(timeout=30)
    assert emitter.sent == accepted == len(producer.sent) and emitter.failed == 0


def test_a_failing_producer_never_reaches_the_caller() -> None:
    class Broken(RecordingProducer):
        def send(self, topic: str, key: bytes, value: bytes) -> None:
            raise ConnectionError("broker away")

    emitter = Emitter(Broken())
    assert emitter.emit(COMPLETION) is True
    emitter.close()
    assert (emitter.sent, emitter.failed) == (0, 1)


def test_emits_after_close_are_dropped() -> None:
    emitter = Emitter(RecordingProducer())
    emitter.close()
    assert emitter.emit(COMPLETION) is False and emitter.dropped == 1
