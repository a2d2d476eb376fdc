"""Names shared across packages: the signals driftscope measures on every output.

A signal's name travels far: the collector's extractor computes it, the drift settings key their
detectors by it, incidents and facets store it, the attribution trust verdict maps it to the task
family it resembles, the regression gate decides on it, and the dashboards filter on it as a
Prometheus label value. One :class:`Signal` enum here, in the lowest layer, is imported by all of
them, so a renamed or new signal fails type-checking (or the test that every signal has a trust
family, ``tests/unit/test_vocabulary.py``) instead of silently missing a dict lookup.

``Signal`` is a :class:`~enum.StrEnum`: its members *are* their string values, so records stored
before this module existed, settings files and label values compare equal to them.

>>> Signal("length_tokens") is Signal.LENGTH_TOKENS
True
>>> Signal.REFUSAL == "refusal"
True
>>> sorted(s for s in Signal if s.is_length)
[<Signal.LENGTH_CHARS: 'length_chars'>, <Signal.LENGTH_TOKENS: 'length_tokens'>]
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Signal", "signal_or_none"]


class Signal(StrEnum):
    """Every per-output signal the collector can emit (``services.collector.signals``)."""

    LOGPROB_MEAN = "logprob_mean"
    """Mean natural-log probability of the generated tokens (≤ 0)."""
    LOGPROB_MIN = "logprob_min"
    """The least likely generated token's logprob (≤ 0)."""
    LOW_LOGPROB_SHARE = "low_logprob_share"
    """Share of tokens below the low-confidence threshold (0–1)."""
    ENTROPY_MEAN = "entropy_mean"
    """Mean entropy (nats) of the top-k alternatives, renormalised."""
    CONFIDENCE = "confidence"
    """The gateway's own confidence score (0–1)."""
    LENGTH_CHARS = "length_chars"
    """Output length in characters."""
    LENGTH_TOKENS = "length_tokens"
    """Output length in tokens."""
    LATENCY_MS = "latency_ms"
    """End-to-end latency reported by the gateway."""
    REFUSAL = "refusal"
    """Whether the output matches a refusal pattern (boolean)."""
    FINISH_REASON = "finish_reason"
    """The gateway's finish reason (categorical)."""
    EMBEDDING = "embedding"
    """The output's sentence embedding (vector; topic clusters and novelty)."""

    @property
    def is_length(self) -> bool:
        return self in (Signal.LENGTH_CHARS, Signal.LENGTH_TOKENS)


def signal_or_none(name: str | None) -> Signal | None:
    """``name`` as a :class:`Signal`, or ``None`` for a name driftscope does not emit (a signal
    added by a settings file, or a record from a future version)."""
    if name is None:
        return None
    try:
        return Signal(name)
    except ValueError:
        return None
