"""What a :class:`~driftscope_llm.services.drift.StreamMonitor` reports about itself.

:meth:`StreamMonitor.summary` returns a :class:`MonitorSummary`: per signal, whether it is still
collecting its reference or monitoring, its counts, the reference's and the current window's
descriptive statistics, the window's effect against the reference, and each detector's latest
statistic, threshold, p-value, alarm count and cool-down. The collector copies it into its
Prometheus gauges; the regression gate reads its decisions from it. Those readers use the
attributes here, never keys of a dict, so a renamed field fails type-checking.

The statistics (``reference`` and ``window``) stay plain mappings because they differ by signal
kind (``n`` always; ``mean``, ``std``, ``median`` for continuous signals; ``rate`` for boolean
ones; ``shares`` for categorical ones; ``cluster_shares`` for embeddings): they are shown as
they are. The one number a reader compares — the mean of a continuous signal, the rate of a
boolean one — is :attr:`SignalSummary.reference_level` / :attr:`SignalSummary.window_level`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from driftscope_llm.services.drift.records import StreamKey
from driftscope_llm.services.drift.settings import SignalKind

__all__ = ["DetectorSummary", "EffectSummary", "MonitorSummary", "SignalSummary"]


@dataclass(frozen=True, slots=True)
class DetectorSummary:
    """One detector's latest figures (``None`` before its first test), its alarms so far,
    whether it is cooling down after one, and why it is off (``disabled``, e.g.
    ``"degenerate_reference"`` for a constant reference; ``None`` when it runs)."""

    statistic: float | None
    threshold: float | None
    p_value: float | None
    alarms: int
    cooling_down: bool
    disabled: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"statistic": self.statistic, "threshold": self.threshold,
                "p_value": self.p_value, "alarms": self.alarms,
                "cooling_down": self.cooling_down, "disabled": self.disabled}


@dataclass(frozen=True, slots=True)
class EffectSummary:
    """The current window's effect against the reference, in ``unit``, and the signal's
    minimum effect (the size a window test must reach to raise)."""

    size: float
    unit: str
    min_effect: float

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "unit": self.unit, "min_effect": self.min_effect}


_LEVEL_KEY = {SignalKind.CONTINUOUS: "mean", SignalKind.BOOLEAN: "rate"}


@dataclass(frozen=True, slots=True)
class SignalSummary:
    """One signal of a monitor (module docstring).

    ``state`` is ``collecting`` until the reference is frozen (``reference_values`` counts what
    it holds so far; ``reference``, ``window`` and ``effect`` are ``None`` and ``detectors`` is
    empty), then ``monitoring``. A monitoring signal with an empty window has ``window``
    ``{"n": 0}`` and no ``effect``.
    """

    kind: SignalKind
    state: Literal["collecting", "monitoring"]
    counts: Mapping[str, int]
    reference_values: int = 0
    reference: Mapping[str, Any] | None = None
    window: Mapping[str, Any] | None = None
    effect: EffectSummary | None = None
    detectors: Mapping[str, DetectorSummary] = field(default_factory=dict)

    @property
    def reference_level(self) -> float | None:
        """The reference's mean (continuous) or rate (boolean); ``None`` for other kinds or
        while collecting."""
        return _level(self.kind, self.reference)

    @property
    def window_level(self) -> float | None:
        """The window's mean (continuous) or rate (boolean); ``None`` for other kinds, while
        collecting, or with an empty window."""
        return _level(self.kind, self.window)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (only the fields of the signal's state)."""
        out: dict[str, Any] = {"kind": self.kind.value, "state": self.state,
                               "counts": dict(self.counts)}
        if self.state == "collecting":
            out["reference_values"] = self.reference_values
            return out
        out["reference"] = dict(self.reference or {})
        out["window"] = dict(self.window or {})
        if self.effect is not None:
            out["effect"] = self.effect.to_dict()
        out["detectors"] = {n: d.to_dict() for n, d in self.detectors.items()}
        return out


def _level(kind: SignalKind, stats: Mapping[str, Any] | None) -> float | None:
    key = _LEVEL_KEY.get(kind)
    if key is None or stats is None:
        return None
    v = stats.get(key)
    return float(v) if isinstance(v, int | float) else None


@dataclass(frozen=True, slots=True)
class MonitorSummary:
    """A monitor's stream, events seen, whether every reference is frozen, and its signals."""

    key: StreamKey
    events: int
    reference_ready: bool
    signals: Mapping[str, SignalSummary]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"key", "events", "reference_ready", "signals": {name: ...}}``."""
        return {"key": self.key.to_dict(), "events": self.events,
                "reference_ready": self.reference_ready,
                "signals": {n: s.to_dict() for n, s in self.signals.items()}}
