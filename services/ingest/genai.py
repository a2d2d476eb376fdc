"""OpenTelemetry GenAI spans → OutputEvents: the mapping rules of ``docs/ingestion.md``.

The GenAI semantic conventions are still "Development" and real traffic mixes generations of
them, so every field is looked up in a fixed order of names, newest first:

========================  ======================================================================
event field               source, first one present
========================  ======================================================================
``event_id``              ``<traceId>:<spanId>`` (hex), stable across redeliveries
``ts``                    span end time (start time when the end is missing)
``model``                 ``gen_ai.request.model``, ``gen_ai.response.model``, ``llm.request.model``
``model_version``         the configured ``version_attribute``, ``gen_ai.response.model``,
                          ``llm.response.model``, else ``unversioned``
``output``                ``gen_ai.output.messages`` (attribute, or on the
                          ``gen_ai.client.inference.operation.details`` event), indexed
                          ``gen_ai.completion.0.content``, ``gen_ai.completion`` (attribute, or on
                          the ``gen_ai.content.completion`` event)
``prompt``                the last user message of ``gen_ai.input.messages``, of indexed
                          ``gen_ai.prompt.{i}.role/content``, or ``gen_ai.prompt``
``finish_reason``         ``gen_ai.response.finish_reasons[0]``, the output message's
                          ``finish_reason``, ``gen_ai.completion.0.finish_reason``
``latency_ms``            ``gen_ai.latency.e2e`` (vLLM, seconds) × 1000, else end − start
``token_logprobs``        the first configured ``logprobs_attributes`` present
``segment``               allow-listed ``segment_attributes``: span first, then resource
``output_tokens``         ``gen_ai.usage.output_tokens``, ``gen_ai.usage.completion_tokens``
``metadata``              source, span name, trace/span ids, provider, operation, response id,
                          token usage (``gen_ai.usage.input/output_tokens`` or the older
                          ``prompt/completion_tokens``)
========================  ======================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from driftscope_llm.services.errors import InvalidEventError
from driftscope_llm.services.ingest.openai_records import logprobs_from_content
from driftscope_llm.services.ingest.otlp import SpanView
from driftscope_llm.services.ingest.results import finite_float, validate_event
from driftscope_llm.services.ingest.settings import IngestSettings
from driftscope_llm.services.schemas import OutputEvent, loads_bounded

__all__ = ["AwaitContent", "Skip", "event_from_span"]

_DETAILS_EVENT = "gen_ai.client.inference.operation.details"


class Skip(Exception):
    """The span is not a generation to watch; ``reason`` is one of ``SKIP_REASONS``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AwaitContent(Skip):
    """A generation span without content, asked to wait for it (``hold_contentless``)."""

    def __init__(self) -> None:
        super().__init__("no_content")


def event_from_span(span: SpanView, settings: IngestSettings, *,
                    hold_contentless: bool = False) -> OutputEvent:
    """The event of one GenAI span; :class:`Skip` when it is not a generation to watch,
    :class:`InvalidEventError` when it is one but cannot be mapped, :class:`AwaitContent`
    when it has no content and ``hold_contentless`` (its content may come as log records)."""
    a = span.attributes
    operation = _first_str(a, "gen_ai.operation.name", "llm.request.type")
    if operation is not None and operation not in settings.generation_operations:
        raise Skip("not_generation")
    model = _first_str(a, "gen_ai.request.model", "gen_ai.response.model", "llm.request.model")
    if model is None:
        raise InvalidEventError("missing_model", "no gen_ai.request.model or "
                                                 "gen_ai.response.model attribute")
    details = _event_attrs(span, _DETAILS_EVENT)
    output, message_finish = _output_of(span, details)
    if output is None:
        if hold_contentless:
            raise AwaitContent
        if not settings.keep_contentless:
            raise Skip("no_content")
        output = ""
    fields: dict[str, Any] = {
        "event_id": f"{span.trace_id}:{span.span_id}",
        "ts": _ts(span),
        "model": model,
        "model_version": _version(span, settings) or "unversioned",
        "output": output,
        "segment": _segment(span, settings),
        "metadata": _metadata(span, operation),
    }
    prompt = _prompt_of(span, details)
    if prompt is not None:
        fields["prompt"] = prompt
    finish = _finish_reason(a) or message_finish
    if finish is not None:
        fields["finish_reason"] = finish
    latency = _latency_ms(span)
    if latency is not None:
        fields["latency_ms"] = latency
    _add_logprobs(fields, a, settings)
    output_tokens = _output_tokens(a)
    if output_tokens is not None:
        fields["output_tokens"] = output_tokens
    return validate_event(fields)


# fields ------------------------------------------------------------------------------------------

def _first_str(attrs: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = attrs.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _event_attrs(span: SpanView, name: str) -> dict[str, Any]:
    for event_name, attrs in span.events:
        if event_name == name:
            return attrs
    return {}


def _ts(span: SpanView) -> datetime:
    """The span's end (else start) time; ``invalid_value`` for one no calendar holds (OTLP JSON
    carries any integer: ``1e24`` ns is past year 9999), which rejects that span alone."""
    ns = span.end_ns or span.start_ns
    if ns <= 0:
        raise InvalidEventError("missing_field", "the span has no start or end time")
    try:
        return datetime.fromtimestamp(ns / 1e9, UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidEventError("invalid_value", f"span time {ns} ns is out of range "
                                                 "(past year 9999)") from None


def _version(span: SpanView, settings: IngestSettings) -> str | None:
    if settings.version_attribute:
        for attrs in (span.attributes, span.resource):
            value = attrs.get(settings.version_attribute)
            if value is not None and not isinstance(value, list | dict):
                return str(value)
    return _first_str(span.attributes, "gen_ai.response.model", "llm.response.model")


def _segment(span: SpanView, settings: IngestSettings) -> dict[str, str]:
    labels: dict[str, str] = {}
    for name in settings.segment_attributes:
        for attrs in (span.attributes, span.resource):
            value = attrs.get(name)
            if value is not None and not isinstance(value, list | dict | bytes):
                labels[name] = str(value)
                break
    return labels


def _metadata(span: SpanView, operation: str | None) -> dict[str, Any]:
    a = span.attributes
    meta: dict[str, Any] = {"source": "otlp", "span_name": span.name,
                            "trace_id": span.trace_id, "span_id": span.span_id}
    provider = _first_str(a, "gen_ai.provider.name", "gen_ai.system")
    for key, value in (("provider", provider), ("operation", operation),
                       ("response_id", _first_str(a, "gen_ai.response.id"))):
        if value is not None:
            meta[key] = value
    usage = {}
    for key, names in _USAGE.items():
        count = _token_count(a, names)
        if count is not None:
            usage[key] = count
    if usage:
        meta["usage"] = usage
    return meta


_USAGE = {"input_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
          "output_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")}


def _token_count(attrs: Mapping[str, Any], names: tuple[str, ...]) -> int | None:
    for name in names:
        value = attrs.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _output_tokens(attrs: Mapping[str, Any]) -> int | None:
    """``gen_ai.usage.output_tokens`` (older: ``completion_tokens``): the event's
    ``output_tokens``, which the ``length_tokens`` signal reads when no logprobs came."""
    return _token_count(attrs, _USAGE["output_tokens"])


def _finish_reason(attrs: Mapping[str, Any]) -> str | None:
    value = attrs.get("gen_ai.response.finish_reasons")
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    if isinstance(value, str) and value:
        return value
    return _first_str(attrs, "gen_ai.completion.0.finish_reason")


def _latency_ms(span: SpanView) -> float | None:
    e2e = finite_float(span.attributes.get("gen_ai.latency.e2e"))
    if e2e is not None and e2e >= 0:
        return e2e * 1000.0
    if span.start_ns > 0 and span.end_ns >= span.start_ns:
        return (span.end_ns - span.start_ns) / 1e6
    return None


def _add_logprobs(fields: dict[str, Any], attrs: Mapping[str, Any],
                  settings: IngestSettings) -> None:
    for name in settings.logprobs_attributes:
        value = attrs.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            try:
                value = loads_bounded(value)  # bounded: a JSON string from outside
            except ValueError:
                raise InvalidEventError("wrong_type", f"{name} is not JSON") from None
        if isinstance(value, Mapping):
            value = value.get("content")
        if not isinstance(value, list):
            raise InvalidEventError("wrong_type", f"{name} must hold a list of logprobs")
        tokens, top = logprobs_from_content(value)
        if tokens:
            fields["token_logprobs"] = tokens
        if top:
            fields["top_logprobs"] = top
        return


# content -------------------------------------------------------------------------------------

def _messages(value: Any) -> list[Mapping[str, Any]] | None:
    """A message list from an attribute that is a JSON string or already structured."""
    if isinstance(value, str):
        try:
            value = loads_bounded(value)
        except ValueError:
            return None
    if isinstance(value, Mapping):
        value = [value]
    if isinstance(value, list):
        return [m for m in value if isinstance(m, Mapping)]
    return None


def _message_text(message: Mapping[str, Any]) -> str | None:
    """Text of a message: its ``parts`` of type text (current conventions) or its ``content``
    (older conventions and OpenAI-shaped messages)."""
    parts = message.get("parts")
    if isinstance(parts, list):
        texts = [str(p["content"]) for p in parts if isinstance(p, Mapping)
                 and p.get("type", "text") == "text" and isinstance(p.get("content"), str)]
        return "".join(texts) if texts else None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [str(p["text"]) for p in content
                 if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
        return "".join(texts) if texts else None
    return None


def _output_of(span: SpanView, details: Mapping[str, Any]) -> tuple[str | None, str | None]:
    a = span.attributes
    for source in (a.get("gen_ai.output.messages"), details.get("gen_ai.output.messages")):
        messages = _messages(source) if source is not None else None
        if messages:
            first = messages[0]
            finish = first.get("finish_reason")
            return _message_text(first), finish if isinstance(finish, str) else None
    indexed = a.get("gen_ai.completion.0.content")
    if isinstance(indexed, str):
        return indexed, None
    for source in (a.get("gen_ai.completion"),
                   _event_attrs(span, "gen_ai.content.completion").get("gen_ai.completion")):
        if isinstance(source, str):
            messages = _messages(source)
            text = _message_text(messages[-1]) if messages else None
            return (text if text is not None else source), None
    return None, None


def _prompt_of(span: SpanView, details: Mapping[str, Any]) -> str | None:
    a = span.attributes
    for source in (a.get("gen_ai.input.messages"), details.get("gen_ai.input.messages")):
        messages = _messages(source) if source is not None else None
        if messages:
            return _last_user(messages)
    indexed = _indexed_prompt(a)
    if indexed is not None:
        return indexed
    for source in (a.get("gen_ai.prompt"),
                   _event_attrs(span, "gen_ai.content.prompt").get("gen_ai.prompt")):
        if isinstance(source, str):
            messages = _messages(source)
            found = _last_user(messages) if messages else None
            return found if found is not None else source
    return None


def _last_user(messages: list[Mapping[str, Any]]) -> str | None:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _message_text(message)
    return None


def _indexed_prompt(attrs: Mapping[str, Any]) -> str | None:
    """OpenLLMetry/LiteLLM style ``gen_ai.prompt.{i}.role`` / ``.content``: the last user turn."""
    last: str | None = None
    i = 0
    while f"gen_ai.prompt.{i}.content" in attrs or f"gen_ai.prompt.{i}.role" in attrs:
        content = attrs.get(f"gen_ai.prompt.{i}.content")
        if attrs.get(f"gen_ai.prompt.{i}.role") == "user" and isinstance(content, str):
            last = content
        i += 1
    return last
