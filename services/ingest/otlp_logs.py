"""OTLP log exports (``ExportLogsServiceRequest``) → the GenAI content events they carry.

Instrumentations that capture message content as *events* send it as OTel log records, not on
the span: the official OpenAI instrumentation with ``…CAPTURE_MESSAGE_CONTENT=event_only`` (or
``span_and_event``) emits one ``gen_ai.client.inference.operation.details`` record per call;
older ones emit one record per message (``gen_ai.system.message``, ``gen_ai.user.message``,
``gen_ai.assistant.message``, ``gen_ai.tool.message``) and one per choice (``gen_ai.choice``).
Each record carries the trace and span id of the span it belongs to, which is how
:mod:`.content_join` puts the text back on its span.

Both encodings are read (``otlp_proto`` and ``otlp_json``, as for traces), and
:func:`proto_signal` tells a protobuf log export from a trace export: both start with the tag
byte ``0x0A`` (field 1 of either request), so it looks at the first item's first tag instead —
a span starts with its ``trace_id`` or ``span_id`` (fields 1 and 2, length-delimited: ``0x0A``,
``0x12``), while a log record's field 1 is a fixed64 time (``0x09``) and its ids are fields 9
and 10, so a log record never starts with either tag.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from driftscope_llm.services.errors import InvalidEventError
from driftscope_llm.services.ingest.otlp import any_json, any_proto, attrs_json, parse_export
from driftscope_llm.services.ingest.results import Reject

__all__ = ["CONTENT_EVENTS", "ContentEvent", "OtlpSignal", "content_from_json",
           "content_from_proto", "proto_signal"]

OtlpSignal = Literal["traces", "logs"]
"""Which OTLP export a record holds."""

DETAILS_EVENT = "gen_ai.client.inference.operation.details"
MESSAGE_EVENTS = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                  "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool"}
CHOICE_EVENT = "gen_ai.choice"
CONTENT_EVENTS = frozenset({DETAILS_EVENT, CHOICE_EVENT, *MESSAGE_EVENTS,
                            "gen_ai.content.prompt", "gen_ai.content.completion"})
"""Log record (event) names that carry the content of a GenAI span; other records are skipped
as ``not_genai``."""

_SPAN_FIRST_TAGS = (b"\x0a", b"\x12")


@dataclass(frozen=True, slots=True)
class ContentEvent:
    """One GenAI content log record, addressed to its span by ``(trace_id, span_id)`` in hex."""

    trace_id: str
    span_id: str
    name: str
    attributes: dict[str, Any]
    body: Any
    size: int  # the record's encoded size, which bounds what the join holds in memory

    @property
    def key(self) -> tuple[str, str]:
        return self.trace_id, self.span_id

    @property
    def has_output(self) -> bool:
        """Whether this record carries the generated text (not only the prompt)."""
        if self.name == DETAILS_EVENT:
            return self.attributes.get("gen_ai.output.messages") is not None
        return self.name in (CHOICE_EVENT, "gen_ai.content.completion")


# protobuf -------------------------------------------------------------------------------------

def proto_signal(raw: bytes) -> OtlpSignal:
    """Whether protobuf bytes hold a trace or a log export (see the module docstring). An export
    with no item at all, or bytes that are not protobuf, count as traces (whose parser then
    says what is wrong)."""
    for resource in _fields(raw, 1):
        for scope in _fields(resource, 2):
            for item in _fields(scope, 2):
                return "traces" if item[:1] in _SPAN_FIRST_TAGS else "logs"
    return "traces"


def _fields(buf: bytes, number: int) -> Iterator[bytes]:
    """The payloads of the length-delimited fields ``number`` of one protobuf message; stops
    quietly at the first malformed byte."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        if key < 0:
            return
        wire = key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
            if pos < 0:
                return
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if length < 0 or pos + length > end:
                return
            if key >> 3 == number:
                yield buf[pos:pos + length]
            pos += length
        else:
            return


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """``(value, next position)``, or ``(-1, -1)`` when ``buf`` ends inside the varint."""
    value, shift = 0, 0
    while pos < len(buf) and shift < 64:
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    return -1, -1


def content_from_proto(raw: bytes) -> Iterator[ContentEvent | Reject | str]:
    """Decode a protobuf ``ExportLogsServiceRequest``: a :class:`ContentEvent` per GenAI content
    record, the string ``"not_genai"`` per other record, a :class:`Reject` per content record
    whose values cannot be read. :class:`InvalidEventError` (``otlp_invalid``) when the bytes
    are not such a message."""
    return _walk_proto(parse_export(ExportLogsServiceRequest(), raw))


def _walk_proto(request: ExportLogsServiceRequest) -> Iterator[ContentEvent | Reject | str]:
    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            for record in sl.log_records:
                name = record.event_name or next(
                    (kv.value.string_value for kv in record.attributes if kv.key == "event.name"),
                    "")
                if name not in CONTENT_EVENTS:
                    yield "not_genai"
                    continue
                trace_id, span_id = record.trace_id.hex(), record.span_id.hex()
                try:
                    attributes = {kv.key: any_proto(kv.value) for kv in record.attributes}
                    body = any_proto(record.body) if record.HasField("body") else None
                except InvalidEventError as exc:
                    yield Reject(exc.reason, exc.detail, f"log record {trace_id}:{span_id}")
                    continue
                yield _content(trace_id, span_id, name, attributes, body, record.ByteSize())


# JSON -----------------------------------------------------------------------------------------

def content_from_json(data: Any) -> Iterator[ContentEvent | Reject | str]:
    """Like :func:`content_from_proto` for a parsed OTLP JSON ``ExportLogsServiceRequest``."""
    if not isinstance(data, Mapping) or not isinstance(data.get("resourceLogs"), list):
        raise InvalidEventError("otlp_invalid", "not an OTLP ExportLogsServiceRequest (JSON): "
                                                "resourceLogs is missing")
    return _walk_json(data["resourceLogs"])


def _walk_json(resource_logs: list[Any]) -> Iterator[ContentEvent | Reject | str]:
    try:
        for rl in resource_logs:
            for sl in rl.get("scopeLogs") or []:
                for record in sl.get("logRecords") or []:
                    yield (_record_json(record) if isinstance(record, Mapping)
                           else Reject("otlp_invalid", "a log record must be an object"))
    except (AttributeError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidEventError):
            raise
        raise InvalidEventError("otlp_invalid", f"malformed OTLP JSON: {exc}") from None


def _record_json(record: Mapping[str, Any]) -> ContentEvent | Reject | str:
    trace_id, span_id = str(record.get("traceId") or ""), str(record.get("spanId") or "")
    try:
        attributes = attrs_json(record.get("attributes"))
        name = record.get("eventName") or attributes.get("event.name")
        if name not in CONTENT_EVENTS:
            return "not_genai"
        body = any_json(record["body"]) if "body" in record else None
    except InvalidEventError as exc:
        return Reject(exc.reason, exc.detail, f"log record {trace_id}:{span_id}")
    size = sum(len(str(v)) for v in attributes.values()) + len(str(body))
    return _content(trace_id.lower(), span_id.lower(), str(name), attributes, body, size)


def _content(trace_id: str, span_id: str, name: str, attributes: dict[str, Any], body: Any,
             size: int) -> ContentEvent | str:
    if not trace_id.strip("0") or not span_id.strip("0"):
        return "no_span"  # emitted outside any span: nothing to join it to
    return ContentEvent(trace_id, span_id, name, attributes, body, size)
