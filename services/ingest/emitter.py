"""A small in-process emitter for apps that call models directly (no gateway, no OpenTelemetry).

::

    from openai import OpenAI
    from kafka import KafkaProducer
    from driftscope_llm.services.ingest.emitter import Emitter

    emitter = Emitter(KafkaProducer(bootstrap_servers="kafka:9092"), segment={"route": "billing"})
    client = emitter.wrap(OpenAI())          # or emitter.wrap_async(AsyncOpenAI())
    client.chat.completions.create(model="gpt-4o-mini", messages=[...], logprobs=True)
    ...
    emitter.close()                          # at shutdown: sends what is queued

Each response (streamed ones once the stream is consumed) is queued with its request fields,
latency and labels, and a background thread produces it to Kafka as a wrapped OpenAI record
(``docs/ingestion.md``), keyed by model; the collector maps it like any other OpenAI record, so a
response it cannot map is dead-lettered there, not lost here. The caller never waits: the queue is
bounded, and when it is full the record is dropped and counted (:attr:`Emitter.dropped`) —
monitoring must never slow or fail the call it watches. Duck typed: the ``openai`` package is not
imported; any object with ``model_dump()`` (or a dict) works, so :meth:`emit` also takes a
response you obtained some other way.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from driftscope_llm.services.ingest.openai_records import as_mapping

__all__ = ["Emitter"]

log = logging.getLogger("driftscope.emitter")

_REQUEST_FIELDS = ("model", "messages", "prompt", "temperature", "top_p", "max_tokens",
                   "max_completion_tokens", "logprobs", "top_logprobs", "n", "seed")
_STOP = object()


class Emitter:
    """Queue OpenAI-format responses and produce them to Kafka on a background thread.

    ``producer`` is anything with kafka-python's ``send(topic, key=, value=)`` and ``flush()``.
    ``segment`` and ``model_version`` are default labels for every record (a call to
    :meth:`emit` may override them). Counters: :attr:`sent`, :attr:`dropped` (queue full),
    :attr:`failed` (the producer raised).
    """

    def __init__(self, producer: Any, topic: str = "llm.outputs", *, max_queue: int = 10_000,
                 segment: Mapping[str, str] | None = None, model_version: str | None = None,
                 ) -> None:
        self.producer = producer
        self.topic = topic
        self.segment = dict(segment or {})
        self.model_version = model_version
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    # the caller's side: never blocks -------------------------------------------------------------
    def emit(self, response: Any, *, request: Mapping[str, Any] | None = None,
             segment: Mapping[str, str] | None = None, model_version: str | None = None,
             latency_ms: float | None = None) -> bool:
        """Queue one response (an ``openai`` ``ChatCompletion``, or its dict). False when dropped.

        ``request`` is the call's keyword arguments (``model``, ``messages`` ... ; only the fields
        driftscope reads are kept).
        """
        item = (response, dict(request or {}), dict(segment or self.segment),
                model_version or self.model_version, latency_ms)
        return self._put(item)

    def emit_chunks(self, chunks: list[Any], *, request: Mapping[str, Any] | None = None,
                    latency_ms: float | None = None) -> bool:
        """Queue a streamed response as its chunks (assembled by the collector's mapping)."""
        item = ({"chunks": chunks}, dict(request or {}), dict(self.segment), self.model_version,
                latency_ms)
        return self._put(item)

    def _put(self, item: Any) -> bool:
        if self._closed:
            self.dropped += 1
            return False
        self._ensure_thread()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            return False
        return True

    def wrap(self, client: Any) -> Any:
        """A proxy of a sync ``OpenAI`` client whose ``chat.completions.create`` also emits."""
        return _ClientProxy(client, _SyncCompletions, self)

    def wrap_async(self, client: Any) -> Any:
        """A proxy of an ``AsyncOpenAI`` client whose ``chat.completions.create`` also emits."""
        return _ClientProxy(client, _AsyncCompletions, self)

    # the background side -------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="driftscope-emitter")
                    self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._send(*item)
            finally:
                self._queue.task_done()

    def _send(self, response: Any, request: dict[str, Any], segment: dict[str, str],
              model_version: str | None, latency_ms: float | None) -> None:
        try:
            body = as_mapping(response)
            record: dict[str, Any] = ({"chunks": [as_mapping(c) for c in body["chunks"]]}
                                      if "chunks" in body else {"response": body})
            kept = {k: request[k] for k in _REQUEST_FIELDS if k in request}
            if kept:
                record["request"] = kept
            if segment:
                record["segment"] = segment
            if model_version:
                record["model_version"] = model_version
            if latency_ms is not None:
                record["latency_ms"] = latency_ms
            model = str(kept.get("model") or body.get("model") or "")
            self.producer.send(self.topic, key=model.encode(),
                               value=json.dumps(record, default=str).encode())
            self.sent += 1
        except Exception:  # a monitoring failure must never reach the caller
            self.failed += 1
            log.warning("could not send a response to driftscope", exc_info=True)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far was handed to the producer, then flush it."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        self.producer.flush(timeout=max(0.1, deadline - time.monotonic()))

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued, then stop the thread; later emits are dropped and counted."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=timeout)


# client proxies ----------------------------------------------------------------------------------

class _ClientProxy:
    """Looks like the client; only ``chat.completions.create`` is intercepted."""

    def __init__(self, client: Any, completions_cls: type, emitter: Emitter) -> None:
        self._client = client
        self.chat = _ChatProxy(client.chat, completions_cls, emitter)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _ChatProxy:
    def __init__(self, chat: Any, completions_cls: type, emitter: Emitter) -> None:
        self._chat = chat
        self.completions = completions_cls(chat.completions, emitter)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chat, name)


class _SyncCompletions:
    def __init__(self, completions: Any, emitter: Emitter) -> None:
        self._completions = completions
        self._emitter = emitter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._completions, name)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = self._completions.create(*args, **kwargs)
        if kwargs.get("stream"):
            return _tap_stream(result, self._emitter, kwargs, started)
        self._emitter.emit(result, request=kwargs,
                           latency_ms=(time.perf_counter() - started) * 1000.0)
        return result


class _AsyncCompletions(_SyncCompletions):
    async def create(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = await self._completions.create(*args, **kwargs)
        if kwargs.get("stream"):
            return _tap_async_stream(result, self._emitter, kwargs, started)
        self._emitter.emit(result, request=kwargs,
                           latency_ms=(time.perf_counter() - started) * 1000.0)
        return result


def _tap_stream(stream: Any, emitter: Emitter, request: dict[str, Any],
                started: float) -> Iterator[Any]:
    chunks: list[Any] = []
    for chunk in stream:
        chunks.append(chunk)
        yield chunk
    emitter.emit_chunks(chunks, request=request,
                        latency_ms=(time.perf_counter() - started) * 1000.0)


async def _tap_async_stream(stream: Any, emitter: Emitter, request: dict[str, Any],
                            started: float) -> AsyncIterator[Any]:
    chunks: list[Any] = []
    async for chunk in stream:
        chunks.append(chunk)
        yield chunk
    emitter.emit_chunks(chunks, request=request,
                        latency_ms=(time.perf_counter() - started) * 1000.0)
