"""The incident lifecycle and which moves on-call may make.

::

    open ──► attributing ──► attributed ──► acknowledged ──► resolved
                  │   ▲           │               ▲
                  ▼   │(retry)    ▼               │
                 failed ──────────┴───────────────┘

The worker moves incidents through ``attributing`` to ``attributed`` or ``failed``; people
acknowledge and resolve them (from any earlier state: an incident can be acknowledged before its
attribution finishes, and resolving is always allowed). Every move is appended to the incident's
``state_history`` with its time and an optional note.
"""

from __future__ import annotations

from datetime import datetime

from driftscope_llm.services.errors import DriftscopeError
from driftscope_llm.services.store.model import Incident, IncidentState

__all__ = ["ALLOWED", "LifecycleError", "advance"]

S = IncidentState
#: state → the states a move may lead to.
ALLOWED: dict[IncidentState, frozenset[IncidentState]] = {
    S.OPEN: frozenset({S.ATTRIBUTING, S.ACKNOWLEDGED, S.RESOLVED}),
    S.ATTRIBUTING: frozenset({S.ATTRIBUTING, S.ATTRIBUTED, S.FAILED, S.ACKNOWLEDGED,
                              S.RESOLVED}),
    S.ATTRIBUTED: frozenset({S.ACKNOWLEDGED, S.RESOLVED}),
    S.FAILED: frozenset({S.ATTRIBUTING, S.ACKNOWLEDGED, S.RESOLVED}),
    S.ACKNOWLEDGED: frozenset({S.RESOLVED}),
    S.RESOLVED: frozenset(),
}


class LifecycleError(DriftscopeError, ValueError):
    """A move the lifecycle does not allow; ``incident_id``, ``current`` and ``target``."""

    def __init__(self, incident_id: str, current: IncidentState, target: IncidentState) -> None:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[current])) or "none"
        super().__init__(f"incident {incident_id} is {current.value}; it cannot become "
                         f"{target.value} (allowed: {allowed})")
        self.incident_id = incident_id
        self.current = current
        self.target = target


def advance(incident: Incident, target: IncidentState, at: datetime,
            note: str | None = None) -> None:
    """Move ``incident`` to ``target`` at ``at`` or raise :class:`LifecycleError`."""
    if target not in ALLOWED[incident.state]:
        raise LifecycleError(incident.id, incident.state, target)
    incident.transition(target, at, note)
