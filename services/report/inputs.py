"""What an incident report is drawn from, and how to get it from a stream of events.

:func:`signal_series` re-runs the collector's own signal extraction
(:class:`driftscope_llm.services.collector.signals.SignalExtractor`) over the events of the
incident's stream (model, segment; every version, in stream order), so the plotted values are
exactly what the detectors saw. :func:`project_2d` is a PCA fitted on the reference embeddings only
— the window is projected into the reference's two main directions, so a shifted cloud shows as a
shift.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.attribution.data import Example
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.schemas import OutputEvent, parse_output_event
from driftscope_llm.services.store.model import Incident

__all__ = ["EmbeddingPicture", "ReportInputs", "SignalSeries", "project_2d", "read_events",
           "signal_series"]


@dataclass(frozen=True)
class SignalSeries:
    """One signal of one stream over time. ``values[i]`` is event ``i``'s value (``None`` when
    not measured); ``reference_n`` events at the start form the reference; ``change_index`` is
    the estimated change point and ``alarm_index`` the event that raised the alarm."""

    signal: str
    values: list[float | None]
    reference_n: int
    change_index: int | None = None
    alarm_index: int | None = None
    version_starts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbeddingPicture:
    """2-D projections of reference and window embeddings (rows are points)."""

    reference: npt.NDArray[np.float64]
    window: npt.NDArray[np.float64]
    source: str


@dataclass
class ReportInputs:
    """Everything a report shows; only ``incident`` is required."""

    incident: Incident
    series: list[SignalSeries] = field(default_factory=list)
    embedding: EmbeddingPicture | None = None
    embedding_note: str | None = None
    corpus: dict[str, Example] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def read_events(path: Path) -> list[OutputEvent]:
    """Valid OutputEvents of a JSONL file (invalid lines skipped: they never reached a monitor)."""
    out: list[OutputEvent] = []
    with path.open("rb") as f:
        for raw in f:
            line = raw.strip()
            if not line:
                continue
            try:
                out.append(parse_output_event(line))
            except ValueError:
                continue
    return out


def signal_series(events: Iterable[OutputEvent], incident: Incident, signals: Sequence[str], *,
                  segment_label: str, reference_n: int,
                  settings: SignalSettings | None = None,
                  change_index: dict[str, int] | None = None) -> list[SignalSeries]:
    """The incident stream's per-event values of ``signals`` (module docstring).

    ``change_index`` maps a signal to its change point counted in the incident version's own
    stream (as :class:`driftscope_llm.services.drift.Anomaly` reports it); it is shifted to this
    series' index.
    """
    extractor = SignalExtractor(settings or SignalSettings())
    rows: list[dict[str, Any]] = []
    starts: dict[str, int] = {}
    alarm: int | None = None
    for ev in events:
        if ev.model != incident.model or (ev.segment or {}).get(segment_label) != incident.segment:
            continue
        starts.setdefault(ev.model_version or "", len(rows))
        if ev.event_id == incident.event_id:
            alarm = len(rows)
        rows.append(extractor.extract(ev))
    offset = starts.get(incident.model_version, 0)
    out = []
    for sig in signals:
        vals = [_num(r.get(sig)) for r in rows]
        ci = (change_index or {}).get(sig)
        out.append(SignalSeries(sig, vals, min(reference_n, offset or reference_n),
                                None if ci is None else ci + offset, alarm, dict(starts)))
    return out


def _num(v: object) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        return float(v)
    return None


def project_2d(reference: npt.NDArray[np.float32], window: npt.NDArray[np.float32],
               source: str) -> EmbeddingPicture:
    """PCA on ``reference`` (centred on its mean); both sets projected on its top-2 axes."""
    ref = np.asarray(reference, dtype=np.float64)
    win = np.asarray(window, dtype=np.float64)
    mean = ref.mean(axis=0)
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    axes = vt[:2].T
    return EmbeddingPicture((ref - mean) @ axes, (win - mean) @ axes, source)
