"""An OTLP/HTTP trace receiver: ``POST /v1/traces`` → OutputEvents on Kafka, keyed by model.

Apps and gateways that export OpenTelemetry traces (the SDK's OTLP/HTTP exporter, LiteLLM,
OpenLLMetry, vLLM's ``--otlp-traces-endpoint``) point their exporter here, with no OpenTelemetry
Collector in between. What it answers, per the OTLP/HTTP specification:

======  ========================================================================================
code    when
======  ========================================================================================
200     the request was read; every GenAI span that maps is on Kafka. Spans that could not be
        mapped are counted in ``partial_success.rejected_spans`` (with the first reasons in
        ``error_message``) and dead-lettered; non-GenAI spans are accepted and skipped
400     the body is not an ``ExportTraceServiceRequest`` (truncated protobuf, bad JSON, bad gzip)
401     a bearer token is configured and the request does not carry it
404     another path (``/v1/traces`` and ``/v1/logs`` are served: log records carrying GenAI
        content are joined to their spans, ``docs/ingestion.md``)
400     also: a ``Content-Length`` that is not ASCII digits, or repeated with different values
408     the request line and headers, or the body, did not arrive within their deadlines
        (``header_timeout_s``, ``body_timeout_s``); the connection is closed
411     no ``Content-Length`` (chunked bodies are refused: the size must be known to bound it)
413     the body, or its gzip-decompressed form, exceeds ``max_body_bytes``
415     a content type other than ``application/x-protobuf`` / ``application/json``, or an
        encoding other than ``gzip`` / ``identity``
429     ``max_concurrent_requests`` are already being converted; ``Retry-After`` says when to
        retry (the body was read and dropped: nothing of it reached Kafka)
503     Kafka did not acknowledge in time; ``Retry-After`` asks the client to try again later
======  ========================================================================================

Error bodies are a ``google.rpc.Status`` in the request's encoding. The response is sent only
after Kafka acknowledged every event of the request (``acks=all``), so a 200 loses nothing.

One span costs itself alone: a span that cannot be mapped (a timestamp out of range, an
attribute nested too deeply) or whose event would exceed ``max_event_bytes`` (it could never be
produced, and a 503 would make the client resend the whole batch forever) is rejected — counted
in ``partial_success``, dead-lettered (its bytes cut to 512 KiB) — and its siblings are
delivered. ``driftscope_receiver_spans_total`` counts spans once Kafka acknowledged them. The
HTTP server is :class:`~driftscope_llm.services.http_server.GuardedServer`: a listen backlog, a
connection cap and read deadlines (``docs/ingestion.md``, "Limits").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import CollectorRegistry, Counter, Histogram

from driftscope_llm.services.bus.base import Publisher
from driftscope_llm.services.http_server import GuardedHandler, GuardedServer, RequestRefused
from driftscope_llm.services.ingest.decode import RecordDecoder
from driftscope_llm.services.ingest.join_sweeper import JoinSweeper
from driftscope_llm.services.ingest.otlp_logs import OtlpSignal
from driftscope_llm.services.ingest.results import Decoded, Reject
from driftscope_llm.services.ingest.settings import RecordFormat
from driftscope_llm.services.otlp_receiver.settings import OtlpReceiverSettings
from driftscope_llm.services.schemas import DeadLetter, OutputEvent

__all__ = ["EventSink", "KafkaSink", "OtlpReceiver", "ReceiverMetrics"]

log = logging.getLogger("driftscope.otlp_receiver")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
SOURCE = "otlp-http:/v1/traces"
"""``source_topic`` of the dead letters the receiver writes (no Kafka offset: partition and
offset are -1)."""
_MAX_DEAD_LETTER_RAW = 512 * 1024  # as the collector's dead letters: one fits a Kafka request

# google.rpc.Code values used in error bodies
_INVALID_ARGUMENT, _UNAUTHENTICATED, _RESOURCE_EXHAUSTED, _UNAVAILABLE = 3, 16, 8, 14


class EventSink(Protocol):
    """Where converted events go; :class:`KafkaSink` in production."""

    def send(self, events: Sequence[OutputEvent], rejects: Sequence[DeadLetter]) -> None:
        """Deliver everything or raise (the receiver answers 503 and the client retries)."""


class KafkaSink:
    """Events to the output topic keyed by model, dead letters to the DLQ, through a
    :class:`~driftscope_llm.services.bus.base.Publisher` (in production a
    :class:`~driftscope_llm.services.bus.kafka.KafkaPublisher`, which waits for the acks)."""

    def __init__(self, publisher: Publisher, topic: str, dead_letter_topic: str) -> None:
        self.publisher = publisher
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic

    def send(self, events: Sequence[OutputEvent], rejects: Sequence[DeadLetter]) -> None:
        for ev in events:
            self.publisher.send(self.topic, ev.model_dump_json(exclude_none=True).encode(),
                                key=ev.model.encode())
        for letter in rejects:
            self.publisher.send(self.dead_letter_topic, letter.model_dump_json().encode(),
                                key=SOURCE.encode(),
                                headers=[("driftscope-reason", letter.reason.encode())])
        self.publisher.flush()  # BusError unless every message above was acknowledged


class ReceiverMetrics:
    """Requests by status code and spans by outcome, on the registry passed in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("driftscope_receiver_requests_total",
                                "OTLP/HTTP requests by response code.", ["code"],
                                registry=registry)
        self.spans = Counter("driftscope_receiver_spans_total",
                             "Spans of requests Kafka acknowledged, by outcome (event, "
                             "rejected, skipped); nothing is counted for a request answered "
                             "503.",
                             ["outcome"], registry=registry)
        self.seconds = Histogram("driftscope_receiver_request_seconds",
                                 "Time to read, convert and deliver one request.",
                                 registry=registry)


class _Refused(Exception):
    def __init__(self, status: int, code: int, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


class OtlpReceiver:
    """The HTTP server. ``start()`` serves on a thread; ``serve_forever()`` on the caller's."""

    def __init__(self, settings: OtlpReceiverSettings, decoder: RecordDecoder, sink: EventSink,
                 metrics: ReceiverMetrics | None = None) -> None:
        self.settings = settings
        self.decoder = decoder
        self.sink = sink
        self.metrics = metrics or ReceiverMetrics(CollectorRegistry())
        self._slots = threading.BoundedSemaphore(settings.max_concurrent_requests)
        self.server = GuardedServer((settings.host, settings.port), self._handler_class(),
                                    settings.limits())
        self._thread: threading.Thread | None = None
        self._sweeper = JoinSweeper(decoder.expire, self._deliver)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}/v1/traces"

    def start(self) -> OtlpReceiver:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="otlp-receiver")
        self._thread.start()
        self._sweeper.start()  # spans waiting for content logs: settled on time when idle
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sweeper.stop()

    # request handling, independent of the HTTP plumbing ----------------------------------------
    def handle(self, path: str, headers: Any, body: bytes) -> tuple[int, str, bytes,
                                                                     dict[str, str]]:
        """Answer one POST: ``(status, content type, body, extra headers)``."""
        ctype = str(headers.get("Content-Type") or "").split(";")[0].strip().lower()
        reply_type = JSON if ctype == JSON else PROTOBUF
        try:
            self._check(path, headers, ctype)
            if not self._slots.acquire(blocking=False):
                raise _Refused(429, _RESOURCE_EXHAUSTED, "too many requests in flight; retry",
                               {"Retry-After": str(self.settings.retry_after_s)})
            try:
                decoded = self._convert_and_deliver(headers, body, ctype, _signal_of(path))
            finally:
                self._slots.release()
        except _Refused as refused:
            self.metrics.requests.labels(str(refused.status)).inc()
            return (refused.status, reply_type,
                    _status_body(reply_type, refused.code, refused.message), refused.headers)
        self.metrics.requests.labels("200").inc()
        return 200, reply_type, _success_body(reply_type, decoded, _signal_of(path)), {}

    def _convert_and_deliver(self, headers: Any, body: bytes, ctype: str,
                             signal: OtlpSignal = "traces") -> Decoded:
        payload = self._decompress(headers, body)
        decoded = self.decoder.decode_as(_format_of(ctype), payload, signal)
        if not decoded.events and decoded.rejects and decoded.rejects[0].item is None:
            raise _Refused(400, _INVALID_ARGUMENT, decoded.rejects[0].error().args[0])
        self._reject_oversized(decoded)
        self._deliver(decoded)
        return decoded

    def _reject_oversized(self, decoded: Decoded) -> None:
        """Turn events whose JSON exceeds the event limit into rejects of their span alone:
        produced, they would fail every retry of the request (``MessageSizeTooLargeError``)."""
        limit = self.decoder.max_event_bytes
        kept: list[OutputEvent] = []
        for event in decoded.events:
            size = len(event.model_dump_json(exclude_none=True).encode())
            if size <= limit:
                kept.append(event)
                continue
            decoded.rejects.append(Reject(
                "too_large", f"the event is {size} bytes, over the limit of {limit}",
                f"span {event.event_id}", _span_raw(event)))
        decoded.events = kept

    def _check(self, path: str, headers: Any, ctype: str) -> None:
        if path.split("?")[0] not in ("/v1/traces", "/v1/logs"):
            raise _Refused(404, 5, f"no such path {path!r}; traces go to POST /v1/traces, "
                                   "logs (GenAI content events) to POST /v1/logs")
        token = self.settings.bearer_token
        if token is not None:
            sent = str(headers.get("Authorization") or "")
            expected = f"Bearer {token.get_secret_value()}"
            if not hmac.compare_digest(sent.encode(), expected.encode()):
                raise _Refused(401, _UNAUTHENTICATED, "missing or wrong bearer token")
        if ctype not in (PROTOBUF, JSON):
            raise _Refused(415, _INVALID_ARGUMENT,
                           f"unsupported Content-Type {ctype!r}; send {PROTOBUF} or {JSON}")

    def _decompress(self, headers: Any, body: bytes) -> bytes:
        encoding = str(headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "identity":
            return body
        if encoding != "gzip":
            raise _Refused(415, _INVALID_ARGUMENT,
                           f"unsupported Content-Encoding {encoding!r}; use gzip or none")
        limit = self.settings.max_body_bytes
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise _Refused(400, _INVALID_ARGUMENT, f"body is not valid gzip: {exc}") from None
        if len(out) > limit:
            raise _Refused(413, _RESOURCE_EXHAUSTED,
                           f"decompressed body exceeds {limit} bytes")
        if not inflater.eof:
            raise _Refused(400, _INVALID_ARGUMENT, "gzip body is truncated")
        return out

    def _deliver(self, decoded: Decoded) -> None:
        now = datetime.now(UTC)
        letters = [_dead_letter(r, now) for r in decoded.rejects]
        try:
            self.sink.send(decoded.events, letters)
        except Exception as exc:  # any delivery failure: the client keeps the data and retries
            log.warning("could not deliver %d events to Kafka: %s", len(decoded.events), exc)
            raise _Refused(503, _UNAVAILABLE, "Kafka did not acknowledge the events; retry",
                           {"Retry-After": str(self.settings.retry_after_s)}) from None
        m = self.metrics  # counted once delivered: a 503's spans come back with the retry
        m.spans.labels("event").inc(len(decoded.events))
        m.spans.labels("rejected").inc(len(decoded.rejects))
        m.spans.labels("skipped").inc(sum(decoded.skipped.values()))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(GuardedHandler):
            server_version = "driftscope-otlp"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.address_string(), *args)

            def do_POST(self) -> None:
                with receiver.metrics.seconds.time():
                    self._post()

            def _post(self) -> None:
                try:
                    raw = self.read_body(receiver.settings.max_body_bytes)
                except RequestRefused as refused:  # framing: the connection cannot go on
                    receiver.metrics.requests.labels(str(refused.status)).inc()
                    code = _RESOURCE_EXHAUSTED if refused.status == 413 else _INVALID_ARGUMENT
                    body = _status_body(PROTOBUF, code, refused.message)
                    self._reply(refused.status, PROTOBUF, body, {"Connection": "close"})
                    return
                status, ctype, body, extra = receiver.handle(self.path, self.headers, raw)
                self._reply(status, ctype, body, extra)

            def do_GET(self) -> None:
                self._reply(405, "text/plain", b"POST OTLP traces to /v1/traces\n",
                            {"Allow": "POST"})

            def _reply(self, status: int, ctype: str, body: bytes,
                       extra: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for key, value in extra.items():
                    self.send_header(key, value)
                if extra.get("Connection") == "close":
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _span_raw(event: OutputEvent) -> bytes:
    """What an oversized span's dead letter carries: its event as JSON (the span itself is
    gone after mapping; the event holds its ids, text and attributes)."""
    return event.model_dump_json(exclude_none=True).encode()


def _dead_letter(reject: Reject, now: datetime) -> DeadLetter:
    raw = reject.raw
    return DeadLetter(reason=reject.reason, detail=reject.error().detail[:1000],
                      source_topic=SOURCE, source_partition=-1, source_offset=-1,
                      raw_b64=base64.b64encode(raw[:_MAX_DEAD_LETTER_RAW]).decode(),
                      raw_bytes=len(raw), raw_truncated=len(raw) > _MAX_DEAD_LETTER_RAW,
                      raw_sha256=hashlib.sha256(raw).hexdigest(), received_at=now)


def _format_of(ctype: str) -> RecordFormat:
    return "otlp_json" if ctype == JSON else "otlp_proto"


def _signal_of(path: str) -> OtlpSignal:
    return "logs" if path.split("?")[0] == "/v1/logs" else "traces"


def _success_body(ctype: str, decoded: Decoded, signal: OtlpSignal = "traces") -> bytes:
    rejected = len(decoded.rejects)
    message = "; ".join(r.error().args[0] for r in decoded.rejects[:5])[:1000]
    if ctype == JSON:
        if not rejected:
            return b"{}"
        field = "rejectedLogRecords" if signal == "logs" else "rejectedSpans"
        return json.dumps({"partialSuccess": {field: str(rejected),
                                              "errorMessage": message}}).encode()
    if signal == "logs":
        logs = ExportLogsServiceResponse()
        if rejected:
            logs.partial_success.rejected_log_records = rejected
            logs.partial_success.error_message = message
        return bytes(logs.SerializeToString())
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return bytes(response.SerializeToString())


def _status_body(ctype: str, code: int, message: str) -> bytes:
    """A ``google.rpc.Status`` (fields 1 ``code``, 2 ``message``) in the reply's encoding."""
    if ctype == JSON:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return bytes([0x08, code]) + b"\x12" + _varint(len(text)) + text


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
