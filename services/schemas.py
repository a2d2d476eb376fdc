"""The messages driftscope reads and writes, as pydantic models.

``OutputEvent`` is the contract with the LLM gateway (topic ``llm.outputs``); ``AnomalyEvent`` and
``AttributionEvent`` are what driftscope publishes; ``DeadLetter`` wraps a message it could not
accept. Unknown fields on an OutputEvent are kept (``extra="allow"``), never rejected, so a gateway
can add fields without breaking the collector.

Use :func:`parse_output_event` on raw bytes: it turns every way a message can be wrong into an
:class:`~driftscope_llm.services.errors.InvalidEventError` with a machine-readable ``reason``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from driftscope_llm.services.errors import InvalidEventError

__all__ = [
    "AnomalyEvent",
    "AttributionEvent",
    "DeadLetter",
    "OutputEvent",
    "parse_output_event",
]

INVALID_REASONS = (
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "non_finite",
    "too_large",
    "invalid_value",
)


def _finite(values: list[float], field: str) -> list[float]:
    if all(map(math.isfinite, values)):  # the common case, at C speed
        return values
    i, v = next((i, v) for i, v in enumerate(values) if not math.isfinite(v))
    raise ValueError(f"non_finite: {field}[{i}] is {v}")


class OutputEvent(BaseModel):
    """One production output of a watched model.

    Required: ``event_id``, ``ts`` (RFC 3339), ``model``, ``output``. Everything else is optional;
    ``token_logprobs`` must be finite natural-log probabilities (≤ 0), ``confidence`` in [0, 1].
    """

    model_config = ConfigDict(extra="allow", strict=False, frozen=True)

    event_id: str = Field(min_length=1, max_length=256)
    ts: datetime
    model: str = Field(min_length=1, max_length=256)
    output: str
    model_version: str = Field(default="unversioned", min_length=1, max_length=256)
    prompt: str | None = None
    segment: dict[str, str] = Field(default_factory=dict)
    token_logprobs: list[float] | None = None
    top_logprobs: list[dict[str, float]] | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    latency_ms: float | None = Field(default=None, ge=0.0)
    finish_reason: str | None = None
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
            _finite(list(alts.values()), f"top_logprobs[{i}]")
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


_VALUE_ERRORS = {"greater_than_equal", "less_than_equal", "string_too_short", "string_too_long"}


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
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except _NonFiniteConstant as exc:
        raise InvalidEventError("non_finite", f"JSON contains {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError("not_json", str(exc)) from None
    if not isinstance(data, dict):
        raise InvalidEventError("not_object", f"expected a JSON object, got {type(data).__name__}")
    try:
        return OutputEvent.model_validate(data)
    except ValidationError as exc:
        reason, detail = _reason_for(exc)
        raise InvalidEventError(reason, detail) from None


class _NonFiniteConstant(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _NonFiniteConstant(name)


class DeadLetter(BaseModel):
    """What goes to the dead-letter topic: the raw bytes, where they came from, and why."""

    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    raw_b64: str
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
