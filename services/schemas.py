"""The messages driftscope reads and writes, as pydantic models.

``OutputEvent`` is the contract with the LLM gateway (topic ``llm.outputs``); ``AnomalyEvent`` and
``AttributionEvent`` are what driftscope publishes; ``DeadLetter`` wraps a message it could not
accept. Unknown fields on an OutputEvent are kept (``extra="allow"``), never rejected, so a gateway
can add fields without breaking the collector.

Use :func:`parse_output_event` on raw bytes: it turns every way a message can be wrong into an
:class:`~driftscope_llm.services.errors.InvalidEventError` with a machine-readable ``reason``.

Parsing is bounded *before* anything recurses (:func:`loads_bounded`): a message nesting deeper
than ``MAX_JSON_DEPTH`` is refused from a scan of its bytes (``too_deep``) without being decoded,
an integer longer than ``MAX_INT_DIGITS`` digits is refused while decoding (``too_large``; Python
would otherwise spend quadratic time on it, or raise past 4,300 digits), a float that overflows
(``1e999``) is ``non_finite`` like ``Infinity``, and a string holding a lone UTF-16 surrogate
(``"\\ud800"``, which JSON allows but UTF-8 cannot encode) is ``invalid_text`` — refused here,
not later when a checkpoint holding the text fails to serialise. Each check costs a byte-level
regular-expression scan on the ordinary message; the exact, slower check runs only on messages
the scan flags.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    field_validator,
)

from driftscope_llm.services.errors import InvalidEventError

__all__ = [
    "INVALID_REASONS",
    "MAX_INT_DIGITS",
    "MAX_JSON_DEPTH",
    "AnomalyEvent",
    "AttributionEvent",
    "DeadLetter",
    "OutputEvent",
    "loads_bounded",
    "parse_output_event",
]

INVALID_REASONS = (
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "non_finite",
    "too_large",
    "too_deep",
    "invalid_text",
    "invalid_value",
    "processing_failed",
    "otlp_invalid",
    "missing_model",
    "no_output",
)
"""Every dead-letter reason. ``processing_failed`` is a valid-looking message whose handling
raised (see :mod:`driftscope_llm.services.collector.batch`); ``otlp_invalid``,
``missing_model`` and ``no_output`` are OTLP spans and OpenAI choices that cannot be mapped
(:mod:`driftscope_llm.services.ingest`, ``docs/ingestion.md``); the others are parse failures."""

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted; an OutputEvent needs 3 (``top_logprobs``)."""

MAX_INT_DIGITS = 64
"""Longest integer literal accepted, in characters (far above any count or timestamp)."""


def _finite(values: list[float], field: str) -> list[float]:
    if all(map(math.isfinite, values)):  # the common case, at C speed
        return values
    i, v = next((i, v) for i, v in enumerate(values) if not math.isfinite(v))
    raise ValueError(f"non_finite: {field}[{i}] is {v}")


def _number_on_the_wire(value: Any) -> Any:
    """Numbers arrive as JSON numbers, never as strings: a string is ``wrong_type`` (the strict
    float after this refuses it), except one spelling a non-finite number (``"NaN"``,
    ``"-Infinity"``), which is reported as what it means, ``non_finite``."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        if not math.isfinite(number):
            raise ValueError(f"non_finite: the string {value[:40]!r} is not a finite number")
    return value


WireFloat = Annotated[float, BeforeValidator(_number_on_the_wire), Strict()]
"""A float field of an event: a JSON number (an integer is taken as a float); strings and
booleans are refused (``wrong_type``), a string spelling NaN or an infinity is ``non_finite``."""


class OutputEvent(BaseModel):
    """One production output of a watched model.

    Required: ``event_id``, ``ts`` (RFC 3339), ``model``, ``output``. Everything else is optional;
    ``token_logprobs`` must be finite natural-log probabilities (≤ 0), ``confidence`` in [0, 1];
    numbers must be JSON numbers (:data:`WireFloat`: ``"-0.5"`` is ``wrong_type``, ``"NaN"``
    ``non_finite``), never coerced from strings.
    Whatever becomes a stream key, a metric label or a categorical signal value is bounded:
    ids, model and version at most 256 characters, at most 16 segment labels (names up to 64
    characters, values up to 256), ``finish_reason`` up to 64.
    """

    model_config = ConfigDict(extra="allow", strict=False, frozen=True)

    event_id: str = Field(min_length=1, max_length=256)
    ts: datetime
    model: str = Field(min_length=1, max_length=256)
    output: str
    model_version: str = Field(default="unversioned", min_length=1, max_length=256)
    prompt: str | None = None
    segment: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)],
                  Annotated[str, StringConstraints(max_length=256)]] = Field(
        default_factory=dict, max_length=16)
    token_logprobs: list[WireFloat] | None = None
    top_logprobs: list[dict[str, WireFloat]] | None = None
    confidence: WireFloat | None = Field(default=None, ge=0.0, le=1.0)
    latency_ms: WireFloat | None = Field(default=None, ge=0.0)
    finish_reason: str | None = Field(default=None, max_length=64)
    output_tokens: int | None = Field(default=None, ge=0, strict=True)
    """Generated tokens as the gateway counted them (OTel ``gen_ai.usage.output_tokens``): the
    ``length_tokens`` signal when no ``token_logprobs`` come."""
    metadata: dict[str, Any] | None = None

    @field_validator("ts")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)

    @field_validator("token_logprobs")
    @classmethod
    def _logprobs(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        _finite(v, "token_logprobs")
        if v and max(v) > 1e-6:
            raise ValueError("invalid_value: token_logprobs must be <= 0 (natural-log probs)")
        return v

    @field_validator("top_logprobs")
    @classmethod
    def _top(cls, v: list[dict[str, float]] | None) -> list[dict[str, float]] | None:
        if v is None:
            return v
        for i, alts in enumerate(v):
            values = list(alts.values())
            _finite(values, f"top_logprobs[{i}]")
            if values and max(values) > 1e-6:
                raise ValueError(f"invalid_value: top_logprobs[{i}] must be <= 0 (natural-log "
                                 "probs)")
        return v

    @field_validator("confidence", "latency_ms")
    @classmethod
    def _finite_scalar(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError(f"non_finite: {v}")
        return v

    @property
    def ts_unix(self) -> float:
        return self.ts.timestamp()


_VALUE_ERRORS = {"greater_than_equal", "less_than_equal", "string_too_short", "string_too_long",
                 "too_long"}


def _reason_for(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = str(first.get("msg", ""))
    kind = str(first.get("type", ""))
    if kind == "missing":
        return "missing_field", f"{loc} is required"
    if "non_finite" in msg or kind == "finite_number":
        return "non_finite", f"{loc}: {msg}"
    if "invalid_value" in msg or kind in _VALUE_ERRORS:
        return "invalid_value", f"{loc}: {msg}"
    return "wrong_type", f"{loc}: {msg}"


def parse_output_event(raw: bytes, *, max_bytes: int = 1_000_000) -> OutputEvent:
    """Decode and validate one message; raise :class:`InvalidEventError` on any defect."""
    if len(raw) > max_bytes:
        raise InvalidEventError("too_large", f"{len(raw)} bytes exceeds the limit of {max_bytes}")
    data = loads_bounded(raw)
    if not isinstance(data, dict):
        raise InvalidEventError("not_object", f"expected a JSON object, got {type(data).__name__}")
    try:
        return OutputEvent.model_validate(data)
    except ValidationError as exc:
        reason, detail = _reason_for(exc)
        raise InvalidEventError(reason, detail) from None


def loads_bounded(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH,
                  fast: bool = True) -> Any:
    """``json.loads`` that cannot recurse deeply, stall on a huge integer or return bad text.

    With ``fast`` (the default), a message within the depth bound is decoded by orjson (about
    five times faster than the standard decoder on an OutputEvent). orjson refuses what the
    exact checks below exist for — NaN and Infinity, a float that overflows, a lone surrogate,
    bytes that are not UTF-8 — and such a message, or one with an integer literal of 19 digits
    or more (which orjson would turn into a float), goes to the standard decoder and its
    checks: the value, or the reason for refusing it, is the same either way
    (``tests/unit/test_collector_batch_parse.py``).

    Raises :class:`InvalidEventError` with reason ``not_json``, ``too_deep``, ``too_large``
    (integer literal), ``non_finite`` (``NaN``, ``Infinity``, or a float that overflows) or
    ``invalid_text`` (a lone surrogate in a string or key). Use it for any JSON from outside:
    events, request bodies, uploaded files.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    depth = _nesting_depth(data, max_depth)
    if depth > max_depth:
        raise InvalidEventError("too_deep", f"nesting deeper than {max_depth} levels")
    numbers = data.translate(_NUMBER_SHAPE)  # digits -> 0, E -> e: substring tests below
    if fast and _LONG_DIGITS not in numbers:
        with contextlib.suppress(orjson.JSONDecodeError):  # the standard decoder says why
            return orjson.loads(data)
    suspicious_numbers = b"0" * (MAX_INT_DIGITS + 1) in numbers or any(
        e in numbers for e in (b"e000", b"e+000"))
    try:
        if suspicious_numbers:  # exact, slower hooks only for messages the scan flagged
            value = json.loads(data, parse_constant=_reject_constant, parse_int=_bounded_int,
                               parse_float=_finite_float)
        else:
            value = json.loads(data, parse_constant=_reject_constant)
    except _NonFiniteNumber as exc:
        raise InvalidEventError("non_finite", f"JSON contains {exc}") from None
    except _LongInteger as exc:
        detail = f"integer literal of {exc} digits; the limit is {MAX_INT_DIGITS}"
        raise InvalidEventError("too_large", detail) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError("not_json", str(exc)) from None
    except RecursionError:  # unreachable after the depth scan; kept as a last line of defence
        raise InvalidEventError("too_deep", "nesting too deep to decode") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidEventError("non_finite", f"JSON is the number {value}")
    if (b"\\u" in data or b"\xed" in data) and _SUSPICIOUS_TEXT.search(data) is not None:
        where = _lone_surrogate(value, "$")
        if where is not None:
            raise InvalidEventError(
                "invalid_text", f"{where} holds a lone UTF-16 surrogate, which is not text")
    return value


# 19 digits in a row: an integer literal that may not fit 64 bits (orjson would return a float)
_LONG_DIGITS = b"0" * 19
# A quoted JSON string, escapes included ("unrolled loop" form: linear, no backtracking).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = np.zeros(256, dtype=np.int32)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
# With digits mapped to 0, a run longer than any accepted integer or an exponent of 3+ digits
# (which may overflow) is a substring test; it matches inside strings too, where it only costs
# the slower, exact decode.
_NUMBER_SHAPE = bytes.maketrans(b"0123456789E", b"0000000000e")
# A \uD800-\uDFFF escape, or the raw bytes of a surrogate (json decodes bytes with surrogatepass)
_SUSPICIOUS_TEXT = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _nesting_depth(data: bytes, limit: int) -> int:
    """The deepest bracket nesting outside strings, from a C-speed scan (no decoding); 0 when
    there are too few brackets to exceed ``limit`` at all."""
    if data.count(b"[") + data.count(b"{") <= limit:  # too few openers to nest deeper
        return 0
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    if len(brackets) <= limit:  # cannot nest deeper than the number of brackets
        return len(brackets)
    steps = _STEP[np.frombuffer(brackets, dtype=np.uint8)]
    return int(np.cumsum(steps).max())


def _lone_surrogate(value: Any, where: str) -> str | None:
    """The JSON path of the first string or key with a lone surrogate, or None (depth-bounded)."""
    if isinstance(value, str):
        return None if _encodable(value) else where
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _lone_surrogate(item, f"{where}[{i}]")
            if found is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            if not _encodable(key):
                return f"{where} (a key)"
            found = _lone_surrogate(item, f"{where}.{key}")
            if found is not None:
                return found
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _NonFiniteNumber(ValueError):
    pass


class _LongInteger(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _NonFiniteNumber(name)


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _LongInteger(len(text.lstrip("-")))
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFiniteNumber(f"{text[:40]} (overflows to {value})")
    return value


class DeadLetter(BaseModel):
    """What goes to the dead-letter topic: the raw bytes, where they came from, and why.

    ``raw_b64`` holds the message's bytes, or their first part when ``raw_truncated`` (a letter
    must fit in one Kafka request); ``raw_bytes`` and ``raw_sha256`` describe the whole message.
    """

    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    raw_b64: str
    raw_bytes: int | None = None
    raw_truncated: bool = False
    raw_sha256: str | None = None
    received_at: datetime


class AnomalyEvent(BaseModel):
    """Published on ``driftscope.anomalies`` when an incident opens or is updated."""

    incident_id: str
    kind: str = Field(description="'opened' or 'updated'")
    model: str
    model_version: str
    segment: str
    signal: str
    detector: str
    statistic: float
    threshold: float
    effect_size: float
    event_id: str
    ts: datetime
    exemplars: list[str]


class AttributionEvent(BaseModel):
    """Published on ``driftscope.attributions`` when an incident's attribution finishes."""

    incident_id: str
    status: str = Field(description="'attributed' or 'failed'")
    reason: str | None = None
    methods: list[str] = Field(default_factory=list)
    top_examples: list[dict[str, Any]] = Field(default_factory=list)
    finished_at: datetime
