"""One record's bytes → :class:`~.results.Decoded`, in the format its topic or file carries.

:func:`detect_format` tells the formats apart from the bytes alone, so ``auto`` (the default)
lets one topic carry all of them: a protobuf ``ExportTraceServiceRequest`` starts with the tag
byte ``0x0A`` (field 1, length-delimited), which no JSON text starts with; among JSON objects an
OTLP export has ``resourceSpans``, an OpenAI record ``choices`` (or a wrapper's ``response`` /
``chunks``), and anything else is read as a driftscope OutputEvent — so a malformed OutputEvent
still gets the OutputEvent parser's reason (``not_json``, ``missing_field`` ...).

OTLP *log* exports share the ``otlp_proto`` / ``otlp_json`` formats (the Collector's Kafka
exporter names its encodings so for every signal): a JSON one has ``resourceLogs``, a protobuf
one is told from a trace export by :func:`~.otlp_logs.proto_signal`. Their GenAI content records
are joined to their spans by the decoder's :class:`~.content_join.ContentJoin`, when it has one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from driftscope_llm.services.errors import InvalidEventError
from driftscope_llm.services.ingest.content_join import ContentJoin
from driftscope_llm.services.ingest.genai import AwaitContent, Skip, event_from_span
from driftscope_llm.services.ingest.openai_records import events_from_openai, is_openai_record
from driftscope_llm.services.ingest.otlp import SpanView, spans_from_json, spans_from_proto
from driftscope_llm.services.ingest.otlp_logs import (
    ContentEvent,
    OtlpSignal,
    content_from_json,
    content_from_proto,
    proto_signal,
)
from driftscope_llm.services.ingest.results import Decoded, Reject, load_json, validate_event
from driftscope_llm.services.ingest.settings import IngestSettings, InputFormat, RecordFormat
from driftscope_llm.services.schemas import loads_bounded, parse_output_event

__all__ = ["IngestMetrics", "RecordDecoder", "detect_format"]

_WHITESPACE = b" \t\r\n"

OTLP_JSON_DEPTH = 128
"""JSON nesting accepted in an OTLP JSON message. An attribute value sits 12 levels down
(resourceSpans, scopeSpans, spans, events, attributes) and each level of an OTLP key-value list
costs four JSON levels, so the OutputEvent bound (64) would refuse a whole request for one
attribute nested 14 levels deep; at 128, an attribute past the mapping's own bound (16 levels)
rejects its span alone (``too_deep``). Deeper JSON is refused whole, before anything recurses."""


def detect_format(raw: bytes) -> RecordFormat:
    """The format of one record, from its bytes (a cheap sniff; see the module docstring)."""
    if raw[:1] == b"\x0a":
        return "otlp_proto"
    head = raw.lstrip(_WHITESPACE)[:1]
    if head == b"{":
        if b'"resourceSpans"' in raw or b'"resourceLogs"' in raw:
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
            "Items that are not generations to watch (not_genai, not_generation, no_content), "
            "and content log records handed to the join (content, no_span, no_join).",
            ["format", "reason"], registry=registry)
        self.join = Counter(
            "driftscope_ingest_join_total",
            "Content-to-span join outcomes: joined spans, redundant content records (their span "
            "carried the text), expired_spans / expired_content (waited content_join.wait_s), "
            "evicted_spans / evicted_content (pushed out by the bounds).",
            ["outcome"], registry=registry)
        self._join_seen: dict[str, int] = {}

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

    def record_join(self, counts: Mapping[str, int]) -> None:
        """Bring ``driftscope_ingest_join_total`` up to the join's own running counts."""
        for outcome, n in counts.items():
            seen = self._join_seen.get(outcome, 0)
            if n > seen:
                self.join.labels(outcome).inc(n - seen)
                self._join_seen[outcome] = n


class RecordDecoder:
    """Decode records per the :class:`IngestSettings`; stateless apart from its metrics and, when
    given one, its ``join`` (GenAI content log records put back on their spans; without one a
    content record cannot meet its span, which comes in another record, and is skipped as
    ``no_join``). With a join, a generation span without content may come out of a later
    record's decode (when its content arrives, or when its wait runs out: every decode settles
    the expired ones, and :meth:`expire` does it on demand)."""

    def __init__(self, settings: IngestSettings | None = None, *, max_event_bytes: int = 1_000_000,
                 metrics: IngestMetrics | None = None, join: ContentJoin | None = None) -> None:
        self.settings = settings if settings is not None else IngestSettings()
        self.max_event_bytes = max_event_bytes
        self.metrics = metrics
        self.join = join

    def decode(self, topic: str, raw: bytes) -> Decoded:
        """Decode a record of ``topic`` in the topic's configured format."""
        return self.decode_as(self.settings.format_for(topic), raw)

    def decode_as(self, fmt: InputFormat, raw: bytes, signal: OtlpSignal | None = None) -> Decoded:
        """Decode ``raw`` as ``fmt`` (``auto``: detect it); an OTLP record as the export
        ``signal`` names (``None``: detect traces or logs)."""
        concrete: RecordFormat = detect_format(raw) if fmt == "auto" else fmt
        decoded = self._decode(concrete, raw, strict=fmt != "auto", signal=signal)
        if self.join is not None and concrete.startswith("otlp"):
            self._settle(decoded, self.join.expire())
        if self.metrics is not None:
            self.metrics.record(decoded)
            if self.join is not None:
                self.metrics.record_join(self.join.counts)
        return decoded

    def expire(self, *, everything: bool = False) -> Decoded:
        """Settle the spans whose wait for content ran out (every held one with ``everything``,
        at shutdown): ``no_content`` skips, or empty-output events with ``keep_contentless``."""
        decoded = Decoded(format="otlp_proto")
        if self.join is not None:
            self._settle(decoded, self.join.expire(everything=everything))
            if self.metrics is not None:
                self.metrics.record(decoded)
                self.metrics.record_join(self.join.counts)
        return decoded

    def _decode(self, fmt: RecordFormat, raw: bytes, *, strict: bool,
                signal: OtlpSignal | None = None) -> Decoded:
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
                if (signal or proto_signal(raw)) == "logs":
                    return self.from_logs(fmt, content_from_proto(raw))
                return self.from_spans(fmt, spans_from_proto(raw))
            except InvalidEventError as exc:
                return Decoded.rejected(fmt, exc.reason, exc.detail)
        try:
            data = loads_bounded(raw, max_depth=OTLP_JSON_DEPTH) if fmt == "otlp_json" \
                else load_json(raw)
        except InvalidEventError as exc:
            return Decoded.rejected(fmt, exc.reason, exc.detail)
        return self.from_json(fmt, data, strict=strict, signal=signal)

    def from_json(self, fmt: RecordFormat, data: Any, *, strict: bool = True,
                  signal: OtlpSignal | None = None) -> Decoded:
        """Decode an already parsed JSON record (``openai``, ``otlp_json`` or ``driftscope``)."""
        if not isinstance(data, Mapping):
            return Decoded.rejected(fmt, "not_object",
                                    f"expected a JSON object, got {type(data).__name__}")
        if fmt == "otlp_json" and (signal == "logs" or (
                signal is None and "resourceLogs" in data and "resourceSpans" not in data)):
            try:
                return self.from_logs(fmt, content_from_json(data))
            except InvalidEventError as exc:
                return Decoded.rejected(fmt, exc.reason, exc.detail)
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

    def from_logs(self, fmt: RecordFormat,
                  records: Iterator[ContentEvent | Reject | str]) -> Decoded:
        """Hand every GenAI content record to the join (skip reason ``content``); the spans it
        completes are mapped into this record's events. Other log records are ``not_genai``."""
        out = Decoded(format=fmt)
        content: list[ContentEvent] = []
        try:
            for record in records:
                if isinstance(record, str):
                    out.skipped[record] += 1
                elif isinstance(record, Reject):
                    out.rejects.append(record)
                else:
                    content.append(record)
        except InvalidEventError as exc:
            out.rejects.append(Reject(exc.reason, f"{exc.detail} (the rest of the message)"))
        if not content:
            return out
        if self.join is None:
            out.skipped["no_join"] += len(content)
            return out
        out.skipped["content"] += len(content)
        for span in self.join.offer_content(content):
            self._map_span(out, span, joined=True)
        return out

    def _settle(self, out: Decoded, spans: list[SpanView]) -> None:
        for span in spans:  # waited long enough: mapped with whatever content came, if any
            self._map_span(out, span, joined=True)

    def _map_span(self, out: Decoded, span: SpanView, *, joined: bool = False) -> None:
        """One span: an event, a skip, or a reject of that span alone. The mapping is pure, so
        whatever else it raises on a span's values is that span's fault (``processing_failed``),
        never its siblings' nor the record's. With a join, a span without content waits for it
        (``held``), unless it already went through the join (``joined``)."""
        try:
            out.events.append(event_from_span(span, self.settings,
                                              hold_contentless=self.join is not None
                                              and not joined))
            if self.join is not None and not joined:
                self.join.span_has_content(span)
        except AwaitContent:
            joined_now = self.join.offer_span(span) if self.join is not None else None
            if joined_now is None:
                out.held += 1
            else:
                self._map_span(out, joined_now, joined=True)
        except Skip as skip:
            out.skipped[skip.reason] += 1
        except InvalidEventError as exc:
            out.rejects.append(Reject(exc.reason, exc.detail, span.item, span.raw()))
        except (ValueError, TypeError, ArithmeticError, LookupError, RecursionError) as exc:
            out.rejects.append(Reject("processing_failed", f"{type(exc).__name__}: {exc}"[:500],
                                      span.item, span.raw()))
