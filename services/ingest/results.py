"""What decoding one record yields: events, per-item rejects with reasons, and skip counts.

One Kafka record (or one HTTP request, or one line of a file) may hold many items — an OTLP
export holds many spans, an OpenAI response many choices. Each item ends up in exactly one of
three places: an :class:`OutputEvent`, a :class:`Reject` (dead-lettered with its reason), or a
skip count (an item that is not an LLM generation, such as an HTTP span, counted by reason).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from driftscope_llm.services.errors import InvalidEventError
from driftscope_llm.services.schemas import OutputEvent, loads_bounded

__all__ = ["Decoded", "Reject", "load_json", "validate_event"]

SKIP_REASONS = ("not_genai", "not_generation", "no_content", "content", "no_span", "no_join")
"""Why an item was skipped: not a GenAI span (or log record), a GenAI span that is not a
generation (embeddings, tool calls), a generation span without output content; for OTLP log
records: a content record handed to the join (its text reaches its span's event), one emitted
outside any span (no trace or span id), one read where no join runs (``driftscope replay``)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """An item that could not become an event. ``item`` names it (``span <trace>:<span>``,
    ``choice 1``) or is ``None`` when the whole record was unreadable; ``raw`` is the item's own
    bytes where it can be cut out of the record (a span), else empty."""

    reason: str
    detail: str
    item: str | None = None
    raw: bytes = b""  # the item alone (a span, in its own encoding), when it can be cut out

    def error(self) -> InvalidEventError:
        """As the error the collector dead-letters (the item is part of the detail)."""
        detail = f"{self.item}: {self.detail}" if self.item else self.detail
        return InvalidEventError(self.reason, detail)


@dataclass(slots=True)
class Decoded:
    """The outcome of one record: ``events`` in the record's order, ``rejects``, ``skipped``,
    and ``held``: generation spans without content that wait for it in the decoder's join (they
    come out of a later decode, as an event or a ``no_content`` skip)."""

    format: str
    events: list[OutputEvent] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    held: int = 0

    @classmethod
    def rejected(cls, fmt: str, reason: str, detail: str) -> Decoded:
        return cls(format=fmt, rejects=[Reject(reason, detail)])

    @property
    def items(self) -> int:
        """Every item the record held, whatever became of it."""
        return len(self.events) + len(self.rejects) + sum(self.skipped.values()) + self.held


def load_json(raw: bytes | str) -> Any:
    """Parse JSON from outside with the OutputEvent parser's bounds
    (:func:`~driftscope_llm.services.schemas.loads_bounded`: depth, integer length, non-finite
    numbers, lone surrogates); :class:`InvalidEventError` with its reason on any defect."""
    return loads_bounded(raw)


_VALUE_ERRORS = {"greater_than_equal", "less_than_equal", "string_too_short", "string_too_long"}


def validate_event(data: dict[str, Any]) -> OutputEvent:
    """An :class:`OutputEvent` from mapped fields, or :class:`InvalidEventError` with the same
    reasons the OutputEvent parser uses (``missing_field``, ``wrong_type``, ``non_finite``,
    ``invalid_value``)."""
    try:
        return OutputEvent.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = str(first.get("msg", ""))
        kind = str(first.get("type", ""))
        if kind == "missing":
            raise InvalidEventError("missing_field", f"{loc} is required") from None
        if "non_finite" in msg or kind == "finite_number":
            raise InvalidEventError("non_finite", f"{loc}: {msg}") from None
        if "invalid_value" in msg or kind in _VALUE_ERRORS:
            raise InvalidEventError("invalid_value", f"{loc}: {msg}") from None
        raise InvalidEventError("wrong_type", f"{loc}: {msg}") from None


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        f = float(value)
    except ValueError:
        return None
    return f if math.isfinite(f) else None
