"""GenAI content sent as OTel log records, joined back to its span (services/ingest/otlp_logs.py,
content_join.py): on the wire as the OpenTelemetry SDK encodes it (the same bytes the
Collector's Kafka exporter writes with ``otlp_proto``, and their OTLP JSON form), in either
arrival order, in the current (``gen_ai.client.inference.operation.details``) and the older
per-message event styles; bounded in time and memory; and ``length_tokens`` from
``gen_ai.usage.output_tokens``. The real instrumentation against a real model is
tests/integration/test_official_instrumentation.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import set_span_in_context

from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.ingest import IngestSettings, RecordDecoder, detect_format
from driftscope_llm.services.ingest.content_join import ContentJoin
from driftscope_llm.services.ingest.otlp_logs import proto_signal
from driftscope_llm.services.ingest.settings import ContentJoinSettings
from driftscope_llm.services.otlp_receiver.server import OtlpReceiver
from driftscope_llm.services.otlp_receiver.settings import OtlpReceiverSettings
from driftscope_llm.services.schemas import DeadLetter, OutputEvent
from driftscope_llm.services.vocabulary import Signal

DETAILS = "gen_ai.client.inference.operation.details"
SPAN_ATTRS = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "support-bot",
              "gen_ai.provider.name": "openai", "gen_ai.response.model": "support-bot-v2",
              "gen_ai.response.finish_reasons": ["stop"], "gen_ai.usage.input_tokens": 19,
              "gen_ai.usage.output_tokens": 7}
INPUT = [{"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
         {"role": "user", "parts": [{"type": "text", "content": "Can I get a refund?"}]}]
OUTPUT = [{"role": "assistant", "finish_reason": "stop",
           "parts": [{"type": "text", "content": "Yes, within 30 days."}]}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class App:
    """One instrumented process: spans and log records through the real SDK, encoded as the
    OTLP exporters encode them (protobuf; :meth:`as_json` for OTLP JSON)."""

    def __init__(self) -> None:
        resource = Resource.create({"service.name": "support-app"})
        self.spans = InMemorySpanExporter()
        self.logs = InMemoryLogRecordExporter()
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        self.logger = self.logger_provider.get_logger("opentelemetry.util.genai.handler")

    def call(self, span_attrs: dict[str, Any], records: Sequence[tuple[str, Any, Any]]) -> str:
        """One generation span, with ``(event name, attributes, body)`` log records emitted in
        its context; returns the event id the span maps to."""
        span = self.tracer_provider.get_tracer("t").start_span("chat support-bot",
                                                                attributes=span_attrs)
        for name, attributes, body in records:
            self.logger.emit(LogRecord(event_name=name, attributes=attributes, body=body,
                                       context=set_span_in_context(span)))
        span.end()
        ctx = span.get_span_context()
        return f"{ctx.trace_id:032x}:{ctx.span_id:016x}"

    def take_spans(self) -> bytes:
        data = encode_spans(self.spans.get_finished_spans()).SerializeToString()
        self.spans.clear()
        return bytes(data)

    def take_logs(self) -> bytes:
        data = encode_logs(self.logs.get_finished_logs()).SerializeToString()
        self.logs.clear()
        return bytes(data)


def as_json(raw: bytes, signal: str) -> bytes:
    """OTLP JSON of a protobuf export: proto3 JSON with hex trace and span ids."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    message = (ExportLogsServiceRequest() if signal == "logs" else ExportTraceServiceRequest())
    message.ParseFromString(raw)
    data = json_format.MessageToDict(message)
    for item in _items(data):
        for key in ("traceId", "spanId"):
            if key in item:
                item[key] = base64.b64decode(item[key]).hex()
    return json.dumps(data).encode()


def _items(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource in data.get("resourceSpans", []) + data.get("resourceLogs", []):
        for scope in resource.get("scopeSpans", []) + resource.get("scopeLogs", []):
            yield from scope.get("spans", []) + scope.get("logRecords", [])


def joining_decoder(clock: Clock, **join: Any) -> RecordDecoder:
    settings = IngestSettings(content_join=ContentJoinSettings(**join))
    return RecordDecoder(settings, join=ContentJoin(settings.content_join, clock=clock))


def test_log_exports_are_told_from_trace_exports_in_both_encodings() -> None:
    app = App()
    app.call(SPAN_ATTRS, [(DETAILS, {"gen_ai.output.messages": OUTPUT}, None)])
    spans, logs = app.take_spans(), app.take_logs()
    assert spans[:1] == logs[:1] == b"\x0a"  # both requests start with field 1
    assert (proto_signal(spans), proto_signal(logs)) == ("traces", "logs")
    assert detect_format(logs) == "otlp_proto"
    assert detect_format(as_json(logs, "logs")) == "otlp_json"
    assert proto_signal(b"\x0a\x05garbage") == "traces"  # the trace parser says what is wrong


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
@pytest.mark.parametrize("first", ["traces", "logs"])
def test_details_event_joins_its_span_in_either_order(encoding: str, first: str) -> None:
    app = App()
    event_id = app.call(SPAN_ATTRS, [(DETAILS, {**SPAN_ATTRS, "gen_ai.input.messages": INPUT,
                                                "gen_ai.output.messages": OUTPUT}, None)])
    records = {"traces": app.take_spans(), "logs": app.take_logs()}
    if encoding == "otlp_json":
        records = {signal: as_json(raw, signal) for signal, raw in records.items()}
    decoder = joining_decoder(Clock())
    second = "logs" if first == "traces" else "traces"
    early = decoder.decode_as("auto", records[first])
    assert early.events == [] and early.format == encoding
    assert (early.held, early.skipped["content"]) == ((1, 0) if first == "traces" else (0, 1))
    late = decoder.decode_as("auto", records[second])
    [event] = late.events
    assert (event.event_id, event.output, event.prompt) == (
        event_id, "Yes, within 30 days.", "Can I get a refund?")
    assert (event.finish_reason, event.output_tokens, event.model) == ("stop", 7, "support-bot")
    assert event.segment == {"service.name": "support-app"}
    assert decoder.join is not None and decoder.join.counts == {"joined": 1}
    assert decoder.join.pending == (0, 0)


def test_older_per_message_events_across_two_log_exports_make_one_event() -> None:
    app = App()
    attrs = {"gen_ai.system": "openai"}
    event_id = app.call({k: v for k, v in SPAN_ATTRS.items() if k != "gen_ai.usage.output_tokens"},
                        [("gen_ai.system.message", attrs, {"content": "Be brief."}),
                         ("gen_ai.user.message", attrs, {"content": "Can I get a refund?"})])
    prompt_logs, spans = app.take_logs(), app.take_spans()
    choice_logs = _choices_for(*event_id.split(":"))  # the choices come in the next export
    decoder = joining_decoder(Clock())
    assert decoder.decode_as("otlp_proto", prompt_logs).skipped == {"content": 2}
    assert decoder.decode_as("otlp_proto", spans).held == 1  # no output yet: it waits
    [event] = decoder.decode_as("otlp_proto", choice_logs).events
    assert (event.event_id, event.output, event.prompt) == (
        event_id, "Yes, within 30 days.", "Can I get a refund?")
    assert event.finish_reason == "stop"  # gen_ai.response.finish_reasons wins over the choice's
    assert event.output_tokens is None  # no usage on that span: not measured, never made up


def _choices_for(trace_id: str, span_id: str) -> bytes:
    """Two ``gen_ai.choice`` records (index 1 first) in OTLP JSON → protobuf, addressed to a
    span by its ids, as an older instrumentation emits them after the response."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    def record(index: int, text: str) -> dict[str, Any]:
        body = {"kvlistValue": {"values": [
            {"key": "index", "value": {"intValue": str(index)}},
            {"key": "finish_reason", "value": {"stringValue": "length"}},
            {"key": "message", "value": {"kvlistValue": {"values": [
                {"key": "role", "value": {"stringValue": "assistant"}},
                {"key": "content", "value": {"stringValue": text}}]}}}]}}
        return {"traceId": trace_id, "spanId": span_id, "body": body,
                "attributes": [{"key": "event.name", "value": {"stringValue": "gen_ai.choice"}}]}

    data = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        record(1, "No."), record(0, "Yes, within 30 days.")]}]}]}
    request = ExportLogsServiceRequest()
    for item in data["resourceLogs"][0]["scopeLogs"][0]["logRecords"]:
        item["traceId"] = base64.b64encode(bytes.fromhex(trace_id)).decode()
        item["spanId"] = base64.b64encode(bytes.fromhex(span_id)).decode()
    json_format.ParseDict(data, request)
    return bytes(request.SerializeToString())


@pytest.mark.parametrize("first", ["traces", "logs"])
def test_content_on_the_span_and_in_events_makes_one_event(first: str) -> None:
    app = App()
    both = {**SPAN_ATTRS, "gen_ai.input.messages": json.dumps(INPUT),
            "gen_ai.output.messages": json.dumps(OUTPUT)}
    app.call(both, [(DETAILS, {"gen_ai.output.messages": OUTPUT}, None)])
    records = [app.take_spans(), app.take_logs()]
    decoder = joining_decoder(Clock())
    decoded = [decoder.decode_as("auto", raw) for raw in
               (records if first == "traces" else records[::-1])]
    assert sum(len(d.events) for d in decoded) == 1
    assert decoder.join is not None and decoder.join.counts == {"redundant": 1}
    assert decoder.join.pending == (0, 0)


@pytest.mark.parametrize("keep_contentless", [False, True])
def test_a_span_waits_wait_s_for_its_content_then_is_settled(keep_contentless: bool) -> None:
    app = App()
    event_id = app.call(SPAN_ATTRS, [("gen_ai.user.message", {}, {"content": "Hi?"})])
    spans, logs = app.take_spans(), app.take_logs()
    clock = Clock()
    settings = IngestSettings(keep_contentless=keep_contentless,
                              content_join=ContentJoinSettings(wait_s=10))
    decoder = RecordDecoder(settings, join=ContentJoin(settings.content_join, clock=clock))
    decoder.decode_as("otlp_proto", logs)  # the prompt only: the choice never comes
    assert decoder.decode_as("otlp_proto", spans).held == 1
    clock.now += 9.9
    assert decoder.expire().items == 0
    clock.now += 0.2
    settled = decoder.expire()
    if keep_contentless:
        [event] = settled.events
        assert (event.event_id, event.output, event.prompt) == (event_id, "", "Hi?")
    else:
        assert settled.events == [] and settled.skipped == {"no_content": 1}
    assert decoder.join is not None and decoder.join.counts == {"expired_spans": 1}
    assert decoder.join.pending == (0, 0)


def test_content_without_its_span_expires_and_the_bounds_evict_the_oldest() -> None:
    app = App()
    ids = [app.call(SPAN_ATTRS, []) for _ in range(3)]
    spans = app.take_spans()
    app.call(SPAN_ATTRS, [(DETAILS, {"gen_ai.output.messages": OUTPUT}, None)])
    app.take_spans()  # this span is never sent
    orphan = app.take_logs()
    clock = Clock()
    decoder = joining_decoder(clock, wait_s=5, max_pending_spans=2)
    decoded = decoder.decode_as("otlp_proto", spans)  # three spans, room for two
    assert decoded.held == 3 and decoded.skipped == {"no_content": 1}  # oldest settled at once
    assert decoder.join is not None and decoder.join.pending == (2, 0)
    decoder.decode_as("otlp_proto", orphan)
    assert decoder.join.pending == (2, 1)
    clock.now += 6
    assert decoder.expire().skipped == {"no_content": 2}
    assert decoder.join.counts == {"evicted_spans": 1, "expired_spans": 2,
                                   "expired_content": 1}
    assert decoder.join.pending == (0, 0)
    assert len(ids) == 3


def test_records_that_cannot_be_joined_are_counted_not_lost_silently() -> None:
    app = App()
    app.call(SPAN_ATTRS, [(DETAILS, {"gen_ai.output.messages": OUTPUT}, None),
                          ("http.request.log", {"url": "/x"}, "GET /x")])
    app.logger.emit(LogRecord(event_name=DETAILS, attributes={"gen_ai.output.messages": OUTPUT}))
    logs = app.take_logs()
    assert RecordDecoder().decode_as("otlp_proto", logs).skipped == {
        "no_join": 1, "not_genai": 1, "no_span": 1}  # replay: no join runs
    assert joining_decoder(Clock()).decode_as("otlp_proto", logs).skipped == {
        "content": 1, "not_genai": 1, "no_span": 1}
    bad = RecordDecoder().decode_as("otlp_json", b'{"resourceSpans": []}', "logs")
    assert [r.reason for r in bad.rejects] == ["otlp_invalid"]


def test_length_tokens_comes_from_output_tokens_when_no_logprobs_come() -> None:
    extractor = SignalExtractor(SignalSettings())
    base = {"event_id": "e", "ts": "2026-01-01T00:00:00Z", "model": "m", "output": "Yes."}
    with_usage = OutputEvent.model_validate({**base, "output_tokens": 7})
    with_both = OutputEvent.model_validate({**base, "output_tokens": 7,
                                            "token_logprobs": [-0.1, -0.2]})
    assert extractor.extract(with_usage)[Signal.LENGTH_TOKENS] == 7.0
    assert extractor.extract(with_both)[Signal.LENGTH_TOKENS] == 2.0  # logprobs count tokens
    assert extractor.extract(OutputEvent.model_validate(base))[Signal.LENGTH_TOKENS] is None


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[OutputEvent] = []

    def send(self, events: Sequence[OutputEvent], rejects: Sequence[DeadLetter]) -> None:
        self.events.extend(events)


def test_receiver_serves_v1_logs_and_joins_across_requests() -> None:
    app = App()
    event_id = app.call(SPAN_ATTRS, [(DETAILS, {"gen_ai.output.messages": OUTPUT}, None)])
    spans, logs = app.take_spans(), app.take_logs()
    sink = RecordingSink()
    rx = OtlpReceiver(OtlpReceiverSettings(port=0), joining_decoder(Clock()), sink)
    try:
        proto = {"Content-Type": "application/x-protobuf", "Content-Length": "1"}
        status, ctype, body, _ = rx.handle("/v1/logs", proto, logs)
        assert (status, ctype) == (200, "application/x-protobuf")
        assert ExportLogsServiceResponse.FromString(body).partial_success.rejected_log_records == 0
        assert sink.events == []  # the content waits for its span
        status, _, _, _ = rx.handle("/v1/traces", proto, spans)
        assert status == 200
        assert [(e.event_id, e.output) for e in sink.events] == [(event_id,
                                                                   "Yes, within 30 days.")]
        status, _, body, _ = rx.handle("/v1/logs", {"Content-Type": "application/json"},
                                       b'{"resourceSpans": []}')
        assert status == 400 and b"resourceLogs is missing" in body
        assert rx.handle("/v1/metrics", proto, b"")[0] == 404
    finally:
        rx.server.server_close()
