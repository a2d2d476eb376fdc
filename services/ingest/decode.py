"""One record's bytes → :class:`~.results.Decoded`, in the format its topic or file carries.

:func:`detect_format` tells the formats apart from the bytes alone, so ``auto`` (the default)
lets one topic carry all of them: a protobuf ``ExportTraceServiceRequest`` starts with the tag
byte ``0x0A`` (field 1, length-delimited), which no JSON text starts with; among JSON objects an
OTLP export has ``resourceSpans``, an OpenAI record ``choices`` (or a wrapper's ``response`` /
``chunks``), and anything else is read as a driftscope OutputEvent — so a malformed OutputEvent
still gets the OutputEvent parser's reason (``not_json``, ``missing_field`` ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from driftscope_llm.services.errors import InvalidEventError
from driftscope_llm.services.ingest.genai import Skip, event_from_span
from driftscope_llm.services.ingest.openai_records import events_from_openai, is_openai_record
from driftscope_llm.services.ingest.otlp import SpanView, spans_from_json, spans_from_proto
from driftscope_llm.services.ingest.results import Decoded, Reject, load_json, validate_event
from driftscope_llm.services.ingest.settings import IngestSettings, InputFormat, RecordFormat
from driftscope_llm.services.schemas import parse_output_event

__all__ = ["IngestMetrics", "RecordDecoder", "detect_format"]

_WHITESPACE = b" \t\r\n"


def detect_format(raw: bytes) -> RecordFormat:
    """The format of one record, from its bytes (a cheap sniff; see the module docstring)."""
    if raw[:1] == b"\x0a":
        return "otlp_proto"
    head = raw.lstrip(_WHITESPACE)[:1]
    if head == b"{":
        if b'"resourceSpans"' in raw:
            return "otlp_json"
        if b'"choices"' in raw or b'"chunks"' in raw:
            return "openai"
    return "driftscope"


class IngestMetrics:
    """Items of multi-item records, by outcome; skips by reason (bounded label values)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.items = Counter(
            "driftscope_ingest_items_total",
            "Spans and choices read from OTLP and OpenAI records, by format and outcome "
            "(event, rejected, skipped).", ["format", "outcome"], registry=registry)
        self.skipped = Counter(
            "driftscope_ingest_skipped_total",
            "Items that are not generations to watch (not_genai, not_generation, no_content).",
            ["format", "reason"], registry=registry)

    def record(self, decoded: Decoded) -> None:
        if decoded.format == "driftscope":
            return  # one message, one event: the collector's own counters tell it all
        fmt = decoded.format
        if decoded.events:
            self.items.labels(fmt, "event").inc(len(decoded.events))
        if decoded.rejects:
            self.items.labels(fmt, "rejected").inc(len(decoded.rejects))
        for reason, n in decoded.skipped.items():
            self.items.labels(fmt, "skipped").inc(n)
            self.skipped.labels(fmt, reason).inc(n)


class RecordDecoder:
    """Decode records per the :class:`IngestSettings`; stateless apart from its metrics."""

    def __init__(self, settings: IngestSettings | None = None, *, max_event_bytes: int = 1_000_000,
                 metrics: IngestMetrics | None = None) -> None:
        self.settings = settings if settings is not None else IngestSettings()
        self.max_event_bytes = max_event_bytes
        self.metrics = metrics

    def decode(self, topic: str, raw: bytes) -> Decoded:
        """Decode a record of ``topic`` in the topic's configured format."""
        return self.decode_as(self.settings.format_for(topic), raw)

    def decode_as(self, fmt: InputFormat, raw: bytes) -> Decoded:
        """Decode ``raw`` as ``fmt`` (``auto``: detect it)."""
        concrete: RecordFormat = detect_format(raw) if fmt == "auto" else fmt
        decoded = self._decode(concrete, raw, strict=fmt != "auto")
        if self.metrics is not None:
            self.metrics.record(decoded)
        return decoded

    def _decode(self, fmt: RecordFormat, raw: bytes, *, strict: bool) -> Decoded:
        if fmt == "driftscope":
            try:
                return Decoded(format=fmt, events=[
                    parse_output_event(raw, max_bytes=self.max_event_bytes)])
            except InvalidEventError as exc:
                return Decoded.rejected(fmt, exc.reason, exc.detail)
        limit = self.settings.max_message_bytes if fmt.startswith("otlp") else self.max_event_bytes
        if len(raw) > limit:
            return Decoded.rejected(fmt, "too_large",
                                    f"{len(raw)} bytes exceeds the limit of {limit}")
        if fmt == "otlp_proto":
            try:
                return self.from_spans(fmt, spans_from_proto(raw))
            except InvalidEventError as exc:
                return Decoded.rejected(fmt, exc.reason, exc.detail)
        try:
            data = load_json(raw)
        except InvalidEventError as exc:
            return Decoded.rejected(fmt, exc.reason, exc.detail)
        return self.from_json(fmt, data, strict=strict)

    def from_json(self, fmt: RecordFormat, data: Any, *, strict: bool = True) -> Decoded:
        """Decode an already parsed JSON record (``openai``, ``otlp_json`` or ``driftscope``)."""
        if not isinstance(data, Mapping):
            return Decoded.rejected(fmt, "not_object",
                                    f"expected a JSON object, got {type(data).__name__}")
        if fmt == "otlp_json" and (strict or "resourceSpans" in data):
            try:
                return self.from_spans(fmt, spans_from_json(data))
            except InvalidEventError as exc:
                return Decoded.rejected(fmt, exc.reason, exc.detail)
        if fmt == "openai" and (strict or is_openai_record(data)):
            return events_from_openai(data)
        try:  # sniffed as another format but is not: read it as the OutputEvent it claims to be
            return Decoded(format="driftscope", events=[validate_event(dict(data))])
        except InvalidEventError as exc:
            return Decoded.rejected("driftscope", exc.reason, exc.detail)

    def from_spans(self, fmt: RecordFormat, spans: Iterator[SpanView | Reject | str]) -> Decoded:
        """Map every span; a defect found part-way keeps what was mapped before it."""
        out = Decoded(format=fmt)
        try:
            for span in spans:
                if isinstance(span, str):
                    out.skipped[span] += 1
                elif isinstance(span, Reject):
                    out.rejects.append(span)
                else:
                    self._map_span(out, span)
        except InvalidEventError as exc:
            out.rejects.append(Reject(exc.reason, f"{exc.detail} (the rest of the message)"))
        return out

    def _map_span(self, out: Decoded, span: SpanView) -> None:
        try:
            out.events.append(event_from_span(span, self.settings))
        except Skip as skip:
            out.skipped[skip.reason] += 1
        except InvalidEventError as exc:
            out.rejects.append(Reject(exc.reason, exc.detail, span.item, span.raw()))
