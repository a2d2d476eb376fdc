"""The state store interface: incidents, checkpoints and reference snapshots.

Two implementations: :class:`~services.store.redis_store.RedisStore` for the services (state shared
by every replica) and :class:`~services.store.memory.MemoryStore` for the embedded mode (``replay``,
``demo``) and for unit tests of pure logic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

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

    def get_incident(self, incident_id: str) -> Incident: ...

    def save_incident(self, incident: Incident) -> None: ...

    def list_incidents(
        self,
        *,
        model: str | None = None,
        state: IncidentState | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Incident]: ...
