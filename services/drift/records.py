"""The values that cross the boundary of the drift package: stream keys, observations, anomalies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Anomaly", "Observation", "ObservationBatch", "SignalValue", "StreamKey"]

SignalValue = float | bool | str | np.ndarray | None
"""One signal's value on one event; ``None`` means "not measured for this event"."""


@dataclass(frozen=True, slots=True)
class StreamKey:
    """Which stream a monitor watches: one model version's events in one (allow-listed) segment."""

    model: str
    model_version: str
    segment: str

    def to_dict(self) -> dict[str, str]:
        return {"model": self.model, "model_version": self.model_version, "segment": self.segment}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StreamKey:
        return cls(str(data["model"]), str(data["model_version"]), str(data["segment"]))


@dataclass(frozen=True, slots=True)
class Observation:
    """One event's signals. ``ts`` is unix seconds; ``values`` maps signal name → value.

    Continuous signals take floats (NaN/inf are excluded and counted, never tested), boolean ones
    ``bool`` (or 0/1), categorical ones ``str``, embeddings a 1-D float array. Keys the settings
    do not name are ignored.
    """

    event_id: str
    ts: float
    values: Mapping[str, SignalValue]


@dataclass(frozen=True, slots=True)
class ObservationBatch:
    """Consecutive events of one stream in columns: what a poll of the input topic delivers.

    ``event_ids`` and ``ts`` have one entry per event, in arrival order; ``values`` maps each
    signal name to a column of the same length (a list holding ``None`` where the signal was not
    measured, or a numpy array when every value is present). Observing a batch is exactly
    observing its events one by one (:meth:`rows` gives them back).
    """

    event_ids: list[str]
    ts: list[float]
    values: Mapping[str, Any]

    def __len__(self) -> int:
        return len(self.event_ids)

    def rows(self) -> list[Observation]:
        """The batch as one :class:`Observation` per event, in order."""
        names = list(self.values)
        cols = [self.values[n] for n in names]
        return [Observation(event_id=eid, ts=self.ts[i],
                            values={n: c[i] for n, c in zip(names, cols, strict=True)})
                for i, eid in enumerate(self.event_ids)]


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A drift alarm raised by one detector on one signal of one stream.

    ``statistic`` and ``threshold`` are in the detector's own scale (a p-value test reports its
    statistic and the statistic's critical value at the budgeted level); ``effect_size`` is in
    ``effect_unit`` and is what was compared with the signal's minimum effect. ``exemplars`` are
    event ids of the current window's most drifted items (lowest values for a drop, the refusals
    for a refusal spike, the outputs farthest from the reference embeddings, ...), most extreme
    first. ``change_index`` is the stream event index (0-based, counting every observed event) at
    which the detector estimates the change began, when it gives one.
    """

    key: StreamKey
    event_id: str
    ts: float
    event_index: int
    signal: str
    detector: str
    statistic: float
    threshold: float
    effect_size: float
    effect_unit: str
    direction: str
    p_value: float | None
    exemplars: list[str]
    reference_summary: dict[str, Any]
    window_summary: dict[str, Any]
    change_index: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (flat stream key fields plus ``key``)."""
        return {
            "event_id": self.event_id,
            "ts": self.ts,
            "event_index": self.event_index,
            "model": self.key.model,
            "model_version": self.key.model_version,
            "segment": self.key.segment,
            "key": self.key.to_dict(),
            "signal": self.signal,
            "detector": self.detector,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "effect_size": self.effect_size,
            "effect_unit": self.effect_unit,
            "direction": self.direction,
            "p_value": self.p_value,
            "exemplars": list(self.exemplars),
            "reference_summary": dict(self.reference_summary),
            "window_summary": dict(self.window_summary),
            "change_index": self.change_index,
            "details": dict(self.details),
        }
