"""Signal kinds: what a signal's per-event value is, shared by the settings and the registry."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SignalKind"]


class SignalKind(StrEnum):
    """What a signal's per-event value is, which decides the detectors that can run on it."""

    CONTINUOUS = "continuous"
    """A finite float per event (logprobs, entropy, confidence, length, latency)."""
    BOOLEAN = "boolean"
    """A yes/no per event (refusal); detectors watch its rate."""
    CATEGORICAL = "categorical"
    """A label per event (finish reason); detectors watch its distribution."""
    EMBEDDING = "embedding"
    """A float vector per event (e.g. 384-d, L2-normalised); may be absent on most events."""
