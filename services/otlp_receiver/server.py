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
404     another path (only ``/v1/traces`` is served)
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
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import threading
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import CollectorRegistry, Counter, Histogram

from driftscope_llm.services.ingest.decode import RecordDecoder
from driftscope_llm.services.ingest.results import Decoded
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

# google.rpc.Code values used in error bodies
_INVALID_ARGUMENT, _UNAUTHENTICATED, _RESOURCE_EXHAUSTED, _UNAVAILABLE = 3, 16, 8, 14


class EventSink(Protocol):
    """Where converted events go; :class:`KafkaSink` in production."""

    def send(self, events: Sequence[OutputEvent], rejects: Sequence[DeadLetter]) -> None:
        """Deliver everything or raise (the receiver answers 503 and the client retries)."""


class KafkaSink:
    """Events to the output topic keyed by model, dead letters to the DLQ; waits for acks."""

    def __init__(self, producer: Any, topic: str, dead_letter_topic: str,
                 timeout_s: float = 10.0) -> None:
        self.producer = producer
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.timeout_s = timeout_s

    def send(self, events: Sequence[OutputEvent], rejects: Sequence[DeadLetter]) -> None:
        futures = [self.producer.send(self.topic, key=ev.model.encode(),
                                      value=ev.model_dump_json(exclude_none=True).encode())
                   for ev in events]
        futures += [self.producer.send(self.dead_letter_topic, key=SOURCE.encode(),
                                       value=letter.model_dump_json().encode(),
                                       headers=[("driftscope-reason", letter.reason.encode())])
                    for letter in rejects]
        self.producer.flush(timeout=self.timeout_s)
        for future in futures:
            future.get(timeout=self.timeout_s)  # raises the send's own error, if any


class ReceiverMetrics:
    """Requests by status code and spans by outcome, on the registry passed in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("driftscope_receiver_requests_total",
                                "OTLP/HTTP requests by response code.", ["code"],
                                registry=registry)
        self.spans = Counter("driftscope_receiver_spans_total",
                             "Spans received, by outcome (event, rejected, skipped).",
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
        self.server = ThreadingHTTPServer((settings.host, settings.port), self._handler_class())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

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
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

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
                decoded = self._convert_and_deliver(headers, body, ctype)
            finally:
                self._slots.release()
        except _Refused as refused:
            self.metrics.requests.labels(str(refused.status)).inc()
            return (refused.status, reply_type,
                    _status_body(reply_type, refused.code, refused.message), refused.headers)
        self.metrics.requests.labels("200").inc()
        return 200, reply_type, _success_body(reply_type, decoded), {}

    def _convert_and_deliver(self, headers: Any, body: bytes, ctype: str) -> Decoded:
        payload = self._decompress(headers, body)
        decoded = self.decoder.decode_as(_format_of(ctype), payload)
        if not decoded.events and decoded.rejects and decoded.rejects[0].item is None:
            raise _Refused(400, _INVALID_ARGUMENT, decoded.rejects[0].error().args[0])
        self._deliver(decoded)
        return decoded

    def _check(self, path: str, headers: Any, ctype: str) -> None:
        if path.split("?")[0] != "/v1/traces":
            raise _Refused(404, 5, f"no such path {path!r}; traces go to POST /v1/traces")
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
        m = self.metrics
        m.spans.labels("event").inc(len(decoded.events))
        m.spans.labels("rejected").inc(len(decoded.rejects))
        m.spans.labels("skipped").inc(sum(decoded.skipped.values()))
        now = datetime.now(UTC)
        letters = [DeadLetter(reason=r.reason, detail=r.error().detail[:1000],
                              source_topic=SOURCE, source_partition=-1, source_offset=-1,
                              raw_b64=base64.b64encode(r.raw).decode(),
                              received_at=now)
                   for r in decoded.rejects]
        try:
            self.sink.send(decoded.events, letters)
        except Exception as exc:  # any delivery failure: the client keeps the data and retries
            log.warning("could not deliver %d events to Kafka: %s", len(decoded.events), exc)
            raise _Refused(503, _UNAVAILABLE, "Kafka did not acknowledge the events; retry",
                           {"Retry-After": str(self.settings.retry_after_s)}) from None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "driftscope-otlp"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.address_string(), *args)

            def do_POST(self) -> None:
                with receiver.metrics.seconds.time():
                    self._post()

            def _post(self) -> None:
                length = self.headers.get("Content-Length")
                limit = receiver.settings.max_body_bytes
                if length is None or not length.isdigit():
                    self._reply(411, PROTOBUF, b"", {"Connection": "close"})
                    return
                if int(length) > limit:
                    receiver.metrics.requests.labels("413").inc()
                    body = _status_body(PROTOBUF, _RESOURCE_EXHAUSTED,
                                        f"body of {length} bytes exceeds {limit}")
                    self._reply(413, PROTOBUF, body, {"Connection": "close"})
                    return
                raw = self.rfile.read(int(length))
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


def _format_of(ctype: str) -> RecordFormat:
    return "otlp_json" if ctype == JSON else "otlp_proto"


def _success_body(ctype: str, decoded: Decoded) -> bytes:
    rejected = len(decoded.rejects)
    message = "; ".join(r.error().args[0] for r in decoded.rejects[:5])[:1000]
    if ctype == JSON:
        if not rejected:
            return b"{}"
        return json.dumps({"partialSuccess": {"rejectedSpans": str(rejected),
                                              "errorMessage": message}}).encode()
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
