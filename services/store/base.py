"""The state store interface: incidents, checkpoints, reference snapshots, job leases.

Two implementations: :class:`~driftscope_llm.services.store.redis_store.RedisStore` for the
services (state shared by every replica; open it from settings with
:func:`~driftscope_llm.services.store.connect.open_store`) and
:class:`~driftscope_llm.services.store.memory.MemoryStore` for the embedded mode (``replay``,
``demo``) and for unit tests of pure logic. Nothing outside this package builds a store key or
touches a Redis client: a caller needing a new kind of state adds an operation here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from driftscope_llm.services.store.lease import Lease
from driftscope_llm.services.store.model import Checkpoint, Incident, IncidentState

__all__ = ["StateStore"]


class StateStore(Protocol):
    """What the collector, the worker and the CLI need from durable state."""

    def load_checkpoint(self, topic: str, partition: int) -> Checkpoint | None: ...

    def save_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    def put_reference(
        self, model: str, version: str, segment: str, snapshot: dict[str, Any], first_seen: float
    ) -> None: ...

    def previous_reference(
        self, model: str, version: str, segment: str
    ) -> dict[str, Any] | None:
        """The reference of the newest *other* version of ``model`` seen before ``version``."""
        ...

    def record_version(self, model: str, version: str, first_seen: float) -> None: ...

    def open_or_update_incident(
        self, incident: Incident, dedup: str, cooldown_s: float
    ) -> tuple[Incident, bool]:
        """Open ``incident`` unless one is live for ``dedup``; then update that one.

        Returns the stored incident and whether it was newly opened. Must hold across replicas.
        """
        ...

    def get_incident(self, incident_id: str) -> Incident:
        """The stored incident; :class:`~driftscope_llm.services.errors.NotFoundError` if none."""
        ...

    def incident_ids_starting(self, prefix: str, *, limit: int = 5) -> list[str]:
        """Stored incident ids that start with ``prefix``, sorted, at most ``limit`` (pass
        ``limit + 1`` to learn whether there are more); resolve what a person typed with
        :func:`~driftscope_llm.services.store.lookup.resolve_incident_id`."""
        ...

    def save_incident(self, incident: Incident) -> None:
        """Write ``incident`` whole (last writer wins; prefer :meth:`update_incident`)."""
        ...

    def update_incident(self, incident_id: str,
                        change: Callable[[Incident], None]) -> Incident:
        """Apply ``change`` to the stored incident atomically and return the result.

        ``change`` mutates the incident it is given; it may run more than once (on a fresh read
        each time) when another writer got in first, so it must not have other side effects.
        Raises :class:`~driftscope_llm.services.errors.NotFoundError` for an unknown id, and
        whatever ``change`` raises (e.g. a refused lifecycle move) without writing.
        """
        ...

    def delete_incidents(self, ids: Sequence[str] = (), *,
                         opened_before: datetime | None = None) -> int:
        """Delete the incidents ``ids`` and every one opened before ``opened_before``;
        how many records existed."""
        ...

    def list_incidents(
        self,
        *,
        model: str | None = None,
        state: IncidentState | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Incident]: ...

    def list_open_incidents(self, *, limit: int = 500) -> list[Incident]:
        """Open incidents (:data:`~driftscope_llm.services.store.lifecycle.OPEN_STATES`),
        newest first."""
        ...

    def count_open_incidents(self) -> dict[tuple[str, str, str], int]:
        """Open incidents per stream: (model, model_version, segment) → count."""
        ...

    def job_lease(self, incident_id: str, token: str, ttl_s: float) -> Lease:
        """The attribution-job lease of ``incident_id`` as seen by holder ``token``
        (:mod:`~driftscope_llm.services.store.lease`); nothing is taken until ``acquire()``."""
        ...

    def is_published(self, incident_id: str) -> bool:
        """Whether the incident's AttributionEvent was marked published."""
        ...

    def mark_published(self, incident_id: str) -> None:
        """Record that the incident's AttributionEvent was published (report-once); the marker
        lives as long as incident records do."""
        ...
