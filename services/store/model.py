"""Records the state store holds: incidents and collector checkpoints."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from driftscope_llm.services.keys import join_key
from driftscope_llm.services.store.attribution_report import AttributionReport
from driftscope_llm.services.store.facets import (
    Facet,
    headline,
    merge_facets,
    ordered_exemplar_ids,
    severity_of,
)

__all__ = ["Checkpoint", "Exemplar", "Incident", "IncidentState", "dedup_key", "incident_id_for"]


class IncidentState(StrEnum):
    """Lifecycle: open → attributing → attributed | failed → acknowledged → resolved."""

    OPEN = "open"
    ATTRIBUTING = "attributing"
    ATTRIBUTED = "attributed"
    FAILED = "failed"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Exemplar(BaseModel):
    event_id: str
    prompt: str | None = None
    output: str | None = None


class Incident(BaseModel):
    """One drift incident: one change of a model version, seen by one or more facets.

    ``facets`` lists every (segment, signal, detector) that raised within the grouping window
    (:mod:`driftscope_llm.services.store.facets`); ``segment``, ``signal``, ``detector``,
    ``statistic``, ``threshold``, ``effect_size`` and ``p_value`` are the *headline* facet's,
    ``severity`` follows from effect sizes, and ``exemplars`` come from the facets, behavioural
    ones first. An incident without facets (saved before they existed) is one facet's worth.

    ``state`` moves only through :func:`driftscope_llm.services.store.lifecycle.advance`;
    ``attribution`` is the worker's typed report
    (:mod:`driftscope_llm.services.store.attribution_report`), validated on assignment too, so a
    report in its JSON form becomes the typed one.
    """

    model_config = ConfigDict(validate_assignment=True)

    id: str
    state: IncidentState = IncidentState.OPEN
    opened_at: datetime
    updated_at: datetime
    model: str
    model_version: str
    segment: str
    signal: str
    detector: str
    statistic: float
    threshold: float
    effect_size: float
    p_value: float | None = None
    event_id: str
    updates: int = 0
    exemplars: list[Exemplar] = Field(default_factory=list)
    reference_summary: dict[str, Any] = Field(default_factory=dict)
    window_summary: dict[str, Any] = Field(default_factory=dict)
    state_history: list[dict[str, str]] = Field(default_factory=list)
    attribution: AttributionReport | None = None
    facets: list[Facet] = Field(default_factory=list)
    severity: str = "info"

    def transition(self, state: IncidentState, at: datetime, reason: str | None = None) -> None:
        """Record a move to ``state`` without checking it; callers use ``lifecycle.advance``."""
        self.state = state
        self.updated_at = at
        entry = {"state": state.value, "at": at.astimezone(UTC).isoformat()}
        if reason:
            entry["reason"] = reason
        self.state_history.append(entry)

    def absorb(self, new: Incident, max_exemplars: int = 50) -> None:
        """Fold a repeated anomaly ``new`` into this live incident it continues."""
        self.updates += 1
        self.updated_at = max(self.updated_at, new.updated_at)
        if self.facets or new.facets:
            texts = {e.event_id: e for e in [*new.exemplars, *self.exemplars]}
            merge_facets(self.facets, new.facets)
            self.apply_facets(texts, max_exemplars)
            return
        self.statistic = new.statistic
        self.threshold = new.threshold
        self.effect_size = new.effect_size
        self.p_value = new.p_value
        self.window_summary = new.window_summary
        seen = {e.event_id for e in self.exemplars}
        self.exemplars.extend(e for e in new.exemplars if e.event_id not in seen)
        del self.exemplars[max_exemplars:]


    def apply_facets(self, texts: dict[str, Exemplar] | None = None,
                     max_exemplars: int = 50) -> None:
        """Set the headline fields, severity and exemplars from ``facets`` (``texts``: the
        exemplar texts known by event id; default: the incident's own)."""
        top = headline(self.facets)
        if top is None:
            return
        self.segment, self.signal, self.detector = top.segment, top.signal, top.detector
        self.statistic, self.threshold = top.statistic, top.threshold
        self.effect_size, self.p_value = top.effect_size, top.p_value
        self.severity = severity_of(self.facets)
        known = texts if texts is not None else {e.event_id: e for e in self.exemplars}
        ids = ordered_exemplar_ids(self.facets)[:max_exemplars]
        self.exemplars = [known.get(i, Exemplar(event_id=i)) for i in ids]


class Checkpoint(BaseModel):
    """What a collector persists per partition: the next offset and the detector state."""

    topic: str
    partition: int
    next_offset: int
    monitors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    totals: dict[str, int] = Field(default_factory=dict)
    saved_at: datetime
    #: set by a store's load only (never saved): streams the checkpoint listed whose state the
    #: store no longer held; they restart, and their counts with them (none is in ``totals``)
    lost_streams: list[str] = Field(default_factory=list, exclude=True)


def dedup_key(model: str, version: str, segment: str, signal: str, detector: str) -> str:
    """One key per (stream, signal, detector); unambiguous
    (:func:`driftscope_llm.services.keys.join_key`)."""
    return join_key(model, version, segment, signal, detector, sep="|")


def incident_id_for(key: str, event_id: str) -> str:
    """Deterministic: the same anomaly re-raised after a redelivery gets the same id."""
    return "inc-" + hashlib.sha256(join_key(key, event_id, sep="#").encode()).hexdigest()[:16]
