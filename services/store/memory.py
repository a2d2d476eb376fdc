"""In-process state for the embedded mode and unit tests. Not shared, not durable."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from driftscope_llm.services.errors import NotFoundError
from driftscope_llm.services.store.keys import StoreKeys
from driftscope_llm.services.store.lease import Lease, MemoryLease, MemoryLeaseTable
from driftscope_llm.services.store.lifecycle import is_open
from driftscope_llm.services.store.model import Checkpoint, Incident, IncidentState

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`~driftscope_llm.services.store.base.StateStore` held in dictionaries.

    Incident updates hold one lock, so threads sharing the store see atomic updates; nothing
    expires (no retention) except leases, which run on ``clock``.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.RLock()
        self._leases = MemoryLeaseTable(clock)
        self._published: set[str] = set()
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

    def incident_ids_starting(self, prefix: str, *, limit: int = 5) -> list[str]:
        return sorted(i for i in self._incidents if i.startswith(prefix))[:limit]

    def save_incident(self, incident: Incident) -> None:
        self._incidents[incident.id] = incident.model_copy(deep=True)

    def update_incident(self, incident_id: str,
                        change: Callable[[Incident], None]) -> Incident:
        with self._lock:
            stored = self.get_incident(incident_id)
            change(stored)  # on a copy: a change that raises leaves the stored record as it was
            self._incidents[incident_id] = stored.model_copy(deep=True)
            return stored

    def delete_incidents(self, ids: Sequence[str] = (), *,
                         opened_before: datetime | None = None) -> int:
        with self._lock:
            targets = set(ids)
            if opened_before is not None:
                targets.update(i for i, inc in self._incidents.items()
                               if inc.opened_at < opened_before)
            found = [i for i in targets if i in self._incidents]
            for i in found:
                del self._incidents[i]
            self._published.difference_update(targets)
            return len(found)

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

    def list_open_incidents(self, *, limit: int = 500) -> list[Incident]:
        found = sorted((i for i in self._incidents.values() if is_open(i.state)),
                       key=lambda i: i.opened_at, reverse=True)
        return [i.model_copy(deep=True) for i in found[:limit]]

    def count_open_incidents(self) -> dict[tuple[str, str, str], int]:
        counts: dict[tuple[str, str, str], int] = {}
        for inc in self._incidents.values():
            if is_open(inc.state):
                key = (inc.model, inc.model_version, inc.segment)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def job_lease(self, incident_id: str, token: str, ttl_s: float) -> Lease:
        return MemoryLease(self._leases, StoreKeys("").job_lease(incident_id), token, ttl_s)

    def is_published(self, incident_id: str) -> bool:
        return incident_id in self._published

    def mark_published(self, incident_id: str) -> None:
        self._published.add(incident_id)
