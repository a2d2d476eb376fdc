"""Per-event signals: what the collector measures on every output before any drift test.

Pure functions of one :class:`~driftscope_llm.services.schemas.OutputEvent` (plus the optional
embedding, which is computed in batches elsewhere). Names match the signal names in
:class:`driftscope_llm.services.drift.DriftSettings`:

========================  =====================================================================
``logprob_mean``          mean natural-log probability of the generated tokens (≤ 0)
``logprob_min``           the least likely generated token's logprob (≤ 0)
``low_logprob_share``     share of tokens with logprob below ``low_logprob_threshold`` (0–1)
``entropy_mean``          mean entropy (nats) of the top-k alternatives, renormalised
``confidence``            the gateway's own confidence score, when sent (0–1)
``length_chars``          output length in characters
``length_tokens``         output length in tokens: len(token_logprobs), else ``output_tokens``
``latency_ms``            end-to-end latency reported by the gateway
``refusal``               whether the output matches a refusal pattern (bool)
``finish_reason``         the gateway's finish reason, when sent (categorical)
========================  =====================================================================

A signal the event does not carry is ``None`` ("not measured"), never a made-up default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.vocabulary import Signal

__all__ = ["DEFAULT_REFUSAL_PATTERNS", "SignalExtractor", "SignalSettings", "Signals"]

DEFAULT_REFUSAL_PATTERNS: tuple[str, ...] = (
    r"\bI(?:'m| am) (?:sorry|afraid)\b.{0,40}\b(?:can(?:no|')t|unable|not able)\b",
    r"\bI (?:can(?:no|')t|won't|will not|am unable to|'m unable to|am not able to) "
    r"(?:help|assist|provide|do that|comply|answer|share|discuss)",
    r"\b(?:as an ai|as a language model)\b",
    r"\bI must (?:decline|refuse)\b",
    r"\bthat(?:'s| is) not something I can\b",
    r"\b(?:against|violates?) (?:my|our) (?:policy|policies|guidelines)\b",
)


class SignalSettings(BaseModel):
    """How per-event signals are computed."""

    refusal_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFUSAL_PATTERNS),
        description="Case-insensitive regular expressions; a match anywhere marks a refusal.",
    )
    refusal_scan_chars: int = Field(
        default=400, ge=1, description="Only the first N characters are scanned for refusals."
    )
    low_logprob_threshold: float = Field(
        default=math.log(0.1), le=0.0,
        description="A token whose logprob is below this counts as low-confidence (default p<0.1).",
    )


@dataclass(frozen=True, slots=True)
class Signals:
    """The scalar signals of one event (``None`` = not measured)."""

    values: dict[str, float | bool | str | None] = field(default_factory=dict)


class SignalExtractor:
    """Compute :class:`Signals` for events; compiled patterns are reused across calls."""

    def __init__(self, settings: SignalSettings) -> None:
        self.settings = settings
        self._refusal = re.compile("|".join(f"(?:{p})" for p in settings.refusal_patterns),
                                   re.IGNORECASE | re.DOTALL)

    def is_refusal(self, text: str) -> bool:
        return self._refusal.search(text[: self.settings.refusal_scan_chars]) is not None

    def extract(self, event: OutputEvent) -> dict[str, float | bool | str | None]:
        values: dict[str, float | bool | str | None] = {
            Signal.LENGTH_CHARS: float(len(event.output)),
            Signal.REFUSAL: self.is_refusal(event.output),
            Signal.CONFIDENCE: event.confidence,
            Signal.LATENCY_MS: event.latency_ms,
            Signal.FINISH_REASON: event.finish_reason,
        }
        values.update(logprob_features(event.token_logprobs, self.settings.low_logprob_threshold))
        if values[Signal.LENGTH_TOKENS] is None and event.output_tokens is not None:
            values[Signal.LENGTH_TOKENS] = float(event.output_tokens)  # usage, no logprobs
        values[Signal.ENTROPY_MEAN] = mean_entropy(event.top_logprobs)
        return values


def logprob_features(
    logprobs: Sequence[float] | None, low_threshold: float
) -> dict[str, float | None]:
    """Mean, minimum, low-confidence share and count of the generated tokens' logprobs."""
    if not logprobs:
        return {Signal.LOGPROB_MEAN: None, Signal.LOGPROB_MIN: None,
                Signal.LOW_LOGPROB_SHARE: None, Signal.LENGTH_TOKENS: None}
    n = len(logprobs)
    return {
        Signal.LOGPROB_MEAN: math.fsum(logprobs) / n,
        Signal.LOGPROB_MIN: min(logprobs),
        Signal.LOW_LOGPROB_SHARE: sum(1 for x in logprobs if x < low_threshold) / n,
        Signal.LENGTH_TOKENS: float(n),
    }


def mean_entropy(top_logprobs: Sequence[dict[str, float]] | None) -> float | None:
    """Mean over positions of the entropy (nats) of the top-k alternatives, renormalised to 1.

    With only the top-k alternatives the true entropy is unknown; renormalising gives a consistent
    lower-tail estimate that moves with the true one, which is what drift detection needs.
    """
    if not top_logprobs:
        return None
    total, count = 0.0, 0
    for alts in top_logprobs:
        if not alts:
            continue
        m = max(alts.values())
        weights = [math.exp(v - m) for v in alts.values()]
        z = math.fsum(weights)
        total += -math.fsum((w / z) * math.log(w / z) for w in weights if w > 0)
        count += 1
    return total / count if count else None
