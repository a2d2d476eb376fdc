"""In-process state for the embedded mode and unit tests. Not shared, not durable."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from driftscope_llm.services.errors import NotFoundError
from driftscope_llm.services.store.model import Checkpoint, Incident, IncidentState

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`~driftscope_llm.services.store.base.StateStore` held in dictionaries."""

    def __init__(self) -> None:
        self._checkpoints: dict[tuple[str, int], Checkpoint] = {}
        self._references: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._versions: dict[str, dict[str, float]] = {}
        self._incidents: dict[str, Incident] = {}
        self._live: dict[str, tuple[str, datetime]] = {}

    def load_checkpoint(self, topic: str, partition: int) -> Checkpoint | None:
        cp = self._checkpoints.get((topic, partition))
        return cp.model_copy(deep=True) if cp else None

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._checkpoints[(checkpoint.topic, checkpoint.partition)] = checkpoint.model_copy(
            deep=True
        )

    def record_version(self, model: str, version: str, first_seen: float) -> None:
        self._versions.setdefault(model, {}).setdefault(version, first_seen)

    def put_reference(
        self, model: str, version: str, segment: str, snapshot: dict[str, Any], first_seen: float
    ) -> None:
        self.record_version(model, version, first_seen)
        self._references.setdefault((model, version, segment), snapshot)

    def previous_reference(self, model: str, version: str, segment: str) -> dict[str, Any] | None:
        versions = self._versions.get(model, {})
        mine = versions.get(version, float("inf"))
        earlier = sorted((t, v) for v, t in versions.items() if v != version and t <= mine)
        for _, v in reversed(earlier):
            ref = self._references.get((model, v, segment))
            if ref is not None:
                return ref
        return None

    def open_or_update_incident(
        self, incident: Incident, dedup: str, cooldown_s: float
    ) -> tuple[Incident, bool]:
        live = self._live.get(dedup)
        if live is not None:
            inc_id, expires = live
            if incident.updated_at.timestamp() <= expires.timestamp() and inc_id in self._incidents:
                stored = self._incidents[inc_id]
                stored.absorb(incident)
                self._live[dedup] = (inc_id, incident.updated_at + timedelta(seconds=cooldown_s))
                return stored.model_copy(deep=True), False
        self._incidents[incident.id] = incident.model_copy(deep=True)
        self._live[dedup] = (incident.id, incident.updated_at + timedelta(seconds=cooldown_s))
        return incident, True

    def get_incident(self, incident_id: str) -> Incident:
        try:
            return self._incidents[incident_id].model_copy(deep=True)
        except KeyError:
            raise NotFoundError("incident", incident_id) from None

    def save_incident(self, incident: Incident) -> None:
        self._incidents[incident.id] = incident.model_copy(deep=True)

    def list_incidents(
        self,
        *,
        model: str | None = None,
        state: IncidentState | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        out = [
            i for i in self._incidents.values()
            if (model is None or i.model == model)
            and (state is None or i.state == state)
            and (since is None or i.opened_at >= since)
            and (until is None or i.opened_at <= until)
        ]
        out.sort(key=lambda i: i.opened_at, reverse=True)
        return [i.model_copy(deep=True) for i in out[:limit]]
