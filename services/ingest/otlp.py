"""OTLP trace exports (``ExportTraceServiceRequest``) → a flat view of each span.

Two encodings carry the same message: ``otlp_proto`` (protobuf; the OpenTelemetry Collector's
Kafka exporter default and ``application/x-protobuf`` over OTLP/HTTP) and ``otlp_json`` (OTLP's
JSON mapping, which differs from proto3's: trace and span ids are hex strings, 64-bit integers
may be strings, attribute values are ``{"stringValue": ...}`` style objects).

Both are read into :class:`SpanView` objects, so the GenAI mapping (:mod:`.genai`) is written
once. Attribute values become plain Python values (``str``, ``int``, ``float``, ``bool``,
``bytes``, lists and dicts for arrays and key-value lists). A span whose attribute keys show it
is not a GenAI span is skipped before its values are converted, which keeps mixed traffic cheap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from driftscope_llm.services.errors import InvalidEventError
from driftscope_llm.services.ingest.results import Reject

__all__ = ["GENAI_MARKERS", "SpanView", "any_json", "any_proto", "attrs_json", "parse_export",
           "spans_from_json", "spans_from_proto"]

GENAI_MARKERS = frozenset({
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model",
    "gen_ai.response.model", "llm.request.type",
})
"""A span carrying any of these attributes is a GenAI span (semconv ≤1.36 and current names,
plus OpenLLMetry's ``llm.request.type``); any other span is skipped as ``not_genai``."""

_MAX_VALUE_DEPTH = 16


@dataclass(slots=True)
class SpanView:
    """One span with its resource's attributes, as plain Python values."""

    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    source: Any = None  # the proto Span or JSON dict, serialised only to dead-letter it

    @property
    def item(self) -> str:
        return f"span {self.trace_id}:{self.span_id}"

    def raw(self) -> bytes:
        """This span alone, in its own encoding (what a dead letter carries)."""
        if isinstance(self.source, Mapping):
            return json.dumps(self.source).encode()
        if self.source is None:
            return b""
        return bytes(self.source.SerializeToString())


# protobuf ------------------------------------------------------------------------------------

def any_proto(value: AnyValue, depth: int = 0) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        if depth >= _MAX_VALUE_DEPTH:
            raise InvalidEventError("too_deep", "attribute value nests too deeply")
        return [any_proto(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        if depth >= _MAX_VALUE_DEPTH:
            raise InvalidEventError("too_deep", "attribute value nests too deeply")
        return {kv.key: any_proto(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def spans_from_proto(raw: bytes) -> Iterator[SpanView | Reject | str]:
    """Decode a protobuf ``ExportTraceServiceRequest``; yield a :class:`SpanView` per GenAI span
    and the string ``"not_genai"`` per other span; a span whose values cannot be read is yielded
    as a :class:`Reject`. :class:`InvalidEventError` (``otlp_invalid``)
    when the bytes are not such a message (truncated, or another message)."""
    return _walk_proto(parse_export(ExportTraceServiceRequest(), raw))


M = TypeVar("M", bound=Message)


def parse_export(request: M, raw: bytes) -> M:
    """``raw`` parsed into the empty OTLP export ``request`` (traces or logs);
    :class:`InvalidEventError` (``otlp_invalid``) naming the message when it is not one."""
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise InvalidEventError("otlp_invalid", f"not an OTLP {type(request).__name__} "
                                                f"(protobuf): {exc}") from None
    return request


def _walk_proto(request: ExportTraceServiceRequest) -> Iterator[SpanView | Reject | str]:
    for rs in request.resource_spans:
        resource: dict[str, Any] | None = None
        for ss in rs.scope_spans:
            for span in ss.spans:
                if not any(kv.key in GENAI_MARKERS for kv in span.attributes):
                    yield "not_genai"
                    continue
                try:
                    if resource is None:
                        resource = {kv.key: any_proto(kv.value)
                                    for kv in rs.resource.attributes}
                    yield SpanView(
                        trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        name=span.name, start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes={kv.key: any_proto(kv.value) for kv in span.attributes},
                        resource=resource,
                        events=[(e.name, {kv.key: any_proto(kv.value) for kv in e.attributes})
                                for e in span.events],
                        source=span)
                except InvalidEventError as exc:
                    yield Reject(exc.reason, exc.detail,
                                 f"span {span.trace_id.hex()}:{span.span_id.hex()}")


# JSON ------------------------------------------------------------------------------------------

_SCALARS = {"stringValue": str, "boolValue": bool, "doubleValue": float}


def any_json(value: Any, depth: int = 0) -> Any:
    if not isinstance(value, Mapping):
        return None
    for key, kind in _SCALARS.items():
        if key in value:
            v = value[key]
            return v if isinstance(v, kind) else (float(v) if kind is float else v)
    if "intValue" in value:
        return int(value["intValue"])  # a string in OTLP JSON (64-bit), a number from some SDKs
    if depth >= _MAX_VALUE_DEPTH:
        raise InvalidEventError("too_deep", "attribute value nests too deeply")
    if "arrayValue" in value:
        return [any_json(v, depth + 1) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return attrs_json((value["kvlistValue"] or {}).get("values", []), depth + 1)
    if "bytesValue" in value:
        return str(value["bytesValue"])
    return None


def attrs_json(attrs: Any, depth: int = 0) -> dict[str, Any]:
    if not isinstance(attrs, list):
        return {}
    return {str(kv["key"]): any_json(kv.get("value"), depth) for kv in attrs
            if isinstance(kv, Mapping) and "key" in kv}


def spans_from_json(data: Any) -> Iterator[SpanView | Reject | str]:
    """Like :func:`spans_from_proto` for a parsed OTLP JSON ``ExportTraceServiceRequest``."""
    if not isinstance(data, Mapping) or not isinstance(data.get("resourceSpans"), list):
        raise InvalidEventError("otlp_invalid", "not an OTLP ExportTraceServiceRequest (JSON): "
                                                "resourceSpans is missing")
    return _walk_json(data["resourceSpans"])


def _walk_json(resource_spans: list[Any]) -> Iterator[SpanView | Reject | str]:
    try:
        for rs in resource_spans:
            resource = attrs_json((rs.get("resource") or {}).get("attributes"))
            for ss in rs.get("scopeSpans") or []:
                for span in ss.get("spans") or []:
                    yield (_span_json(span, resource) if isinstance(span, Mapping)
                           else Reject("otlp_invalid", "a span must be an object"))
    except (AttributeError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidEventError):
            raise
        raise InvalidEventError("otlp_invalid", f"malformed OTLP JSON: {exc}") from None


def _span_json(span: Mapping[str, Any], resource: dict[str, Any]) -> SpanView | Reject | str:
    item = f"span {span.get('traceId', '')}:{span.get('spanId', '')}"
    try:
        return _span_view_json(span, resource)
    except InvalidEventError as exc:
        return Reject(exc.reason, exc.detail, item)
    except (AttributeError, TypeError, ValueError) as exc:
        return Reject("otlp_invalid", f"malformed span: {exc}", item)


def _span_view_json(span: Mapping[str, Any], resource: dict[str, Any]) -> SpanView | str:
    raw_attrs = span.get("attributes") or []
    if not any(isinstance(kv, Mapping) and kv.get("key") in GENAI_MARKERS for kv in raw_attrs):
        return "not_genai"
    return SpanView(
        trace_id=str(span.get("traceId") or ""), span_id=str(span.get("spanId") or ""),
        name=str(span.get("name") or ""),
        start_ns=int(span.get("startTimeUnixNano") or 0),
        end_ns=int(span.get("endTimeUnixNano") or 0),
        attributes=attrs_json(raw_attrs), resource=resource,
        events=[(str(e.get("name") or ""), attrs_json(e.get("attributes")))
                for e in span.get("events") or [] if isinstance(e, Mapping)],
        source=span)
