"""The incident lifecycle: the one table of legal moves, and what "open" means.

::

    open ──► attributing ──► attributed ──► acknowledged ──► resolved
                  │   ▲           │               ▲
                  ▼   │(retry)    ▼               │
                 failed ──────────┴───────────────┘

The worker moves incidents through ``attributing`` to ``attributed`` or ``failed``; a re-run
(``driftscope attribute``) takes a failed incident back through ``attributing``. People
acknowledge and resolve incidents from any earlier state: an incident can be acknowledged before
its attribution finishes, and resolving is always allowed. Every move goes through
:func:`advance`, which appends it to the incident's ``state_history`` with its time and an
optional note, and refuses a move the table does not allow.

An incident is **open** until it is resolved (:data:`OPEN_STATES`): the open-incidents gauge,
``driftscope status`` and :meth:`StateStore.count_open_incidents` all use this one definition.
"""

from __future__ import annotations

from datetime import datetime

from driftscope_llm.services.errors import DriftscopeError
from driftscope_llm.services.store.model import Incident, IncidentState

__all__ = ["ALLOWED", "OPEN_STATES", "LifecycleError", "advance", "can_advance", "is_open"]

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

#: The states of an incident someone still has to look at: every state but ``resolved``.
OPEN_STATES: frozenset[IncidentState] = frozenset(S) - {S.RESOLVED}


class LifecycleError(DriftscopeError, ValueError):
    """A move the lifecycle does not allow; ``incident_id``, ``current`` and ``target``."""

    def __init__(self, incident_id: str, current: IncidentState, target: IncidentState) -> None:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[current])) or "none"
        super().__init__(f"incident {incident_id} is {current.value}; it cannot become "
                         f"{target.value} (allowed: {allowed})")
        self.incident_id = incident_id
        self.current = current
        self.target = target


def is_open(state: IncidentState) -> bool:
    """Whether an incident in ``state`` counts as open (module docstring)."""
    return state in OPEN_STATES


def can_advance(current: IncidentState, target: IncidentState) -> bool:
    """Whether the table allows ``current`` → ``target``."""
    return target in ALLOWED[current]


def advance(incident: Incident, target: IncidentState, at: datetime,
            note: str | None = None) -> None:
    """Move ``incident`` to ``target`` at ``at`` or raise :class:`LifecycleError`."""
    if not can_advance(incident.state, target):
        raise LifecycleError(incident.id, incident.state, target)
    incident.transition(target, at, note)
