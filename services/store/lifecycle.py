"""The incident lifecycle: the one table of legal moves, and what "open" means.

::

    open ──► attributing ──► attributed ──► acknowledged ──► resolved
                  │   ▲           │               ▲
                  ▼   │(retry)    ▼               │
                 failed ──────────┴───────────────┘

An attribution run (the worker per anomaly event, ``driftscope attribute ID`` on demand; both
are :meth:`~driftscope_llm.services.worker.service.Worker.attribute`) moves an incident through
``attributing`` (:func:`begin`) to ``attributed`` or ``failed`` (:func:`complete`); a re-run
takes a failed incident back through ``attributing``. People acknowledge and resolve incidents
from any earlier state (:func:`move`): an incident can be acknowledged before its attribution
finishes (it keeps ``acknowledged`` and gains the report), and resolving is always allowed.
Every move goes through :func:`advance`, which appends it to the incident's ``state_history``
with its time and an optional note, and refuses a move the table does not allow. This module is
the only code that changes an incident's state: the collector records an opening with
:func:`opened`, the CLI's ``ack``/``resolve`` call :func:`move`, attribution calls
:func:`start_attribution` and :func:`finish_attribution` (``tests/unit/test_lifecycle.py``
greps the source tree for any other state change).

An incident is **open** until it is resolved (:data:`OPEN_STATES`, :func:`is_open`): the
open-incidents gauge, ``driftscope status``, :meth:`StateStore.count_open_incidents` and the
collector's "does this version's incident still absorb facets" all use this one definition. It
is **done** (needs no attribution job, :func:`is_done`) once it has a report, or was resolved
before it got one; :class:`Rerun` says which done incidents a run does again.

>>> from datetime import UTC, datetime
>>> from driftscope_llm.services.store.attribution_report import FailedReport
>>> at = datetime(2026, 1, 5, tzinfo=UTC)
>>> inc = Incident(id="i", opened_at=at, updated_at=at, model="m", model_version="v",
...                segment="all", signal="refusal", detector="cusum", statistic=1.0,
...                threshold=1.0, effect_size=0.1, event_id="e")
>>> begin(inc, at); inc.state.value
'attributing'
>>> complete(inc, FailedReport(code="no_target", reason="no_target: none", finished_at=at), at)
>>> [h["state"] for h in inc.state_history], is_done(inc), is_done(inc, Rerun.FAILED)
(['attributing', 'failed'], True, False)
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from driftscope_llm.services.errors import DriftscopeError
from driftscope_llm.services.store.attribution_report import (
    AttributedReport,
    AttributionReport,
    FailedReport,
)
from driftscope_llm.services.store.model import Incident, IncidentState

if TYPE_CHECKING:
    from driftscope_llm.services.store.base import StateStore

__all__ = ["ALLOWED", "OPEN_STATES", "LifecycleError", "Rerun", "advance", "begin",
           "can_advance", "complete", "finish_attribution", "is_done", "is_open", "move",
           "opened", "replaces", "start_attribution"]

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


def opened(incident: Incident, at: datetime) -> None:
    """Record the opening of a new ``incident`` (its first ``state_history`` entry)."""
    incident.transition(incident.state, at)


class Rerun(StrEnum):
    """Which done incidents an attribution run does again."""

    NEVER = "never"
    """The worker: a report, attributed or failed, is final (a failing job is not retried)."""
    FAILED = "failed"
    """``driftscope attribute ID``: a failed report is tried again (after fixing its cause)."""
    ALWAYS = "always"
    """``driftscope attribute ID --force``: any report is replaced, whatever the state."""


def is_done(incident: Incident, rerun: Rerun = Rerun.NEVER) -> bool:
    """Whether ``incident`` needs no attribution job under ``rerun``: it has a report, or it was
    resolved before it got one. An incident acknowledged before its report is not done."""
    if rerun is Rerun.ALWAYS:
        return False
    report = incident.attribution
    if report is None:
        return incident.state is S.RESOLVED
    return not (rerun is Rerun.FAILED and isinstance(report, FailedReport))


def begin(incident: Incident, at: datetime) -> None:
    """An attribution job starts: open or failed → ``attributing``; an incident already
    ``attributing`` (a retry after a lost worker) records the move again; any later state
    (attributed, acknowledged, resolved) is kept."""
    if can_advance(incident.state, S.ATTRIBUTING):
        advance(incident, S.ATTRIBUTING, at)


def replaces(incident: Incident, report: AttributionReport) -> bool:
    """Whether ``report`` may replace what ``incident`` holds: always, except that a failed
    re-run never replaces an attributed report (the incident keeps its ranking)."""
    return not (isinstance(report, FailedReport)
                and isinstance(incident.attribution, AttributedReport))


def complete(incident: Incident, report: AttributionReport, at: datetime) -> None:
    """Store ``report`` with ``incident`` and finish its attribution: ``attributed``, or
    ``failed`` with the report's reason as the note. An open or failed incident passes through
    ``attributing`` first; an acknowledged or resolved one keeps its state and gains the report,
    and an attributed one re-run keeps ``attributed``. Check :func:`replaces` first
    (:func:`finish_attribution` does)."""
    failed = report if isinstance(report, FailedReport) else None
    target = S.ATTRIBUTED if failed is None else S.FAILED
    incident.attribution = report
    if incident.state in (S.OPEN, S.FAILED):
        advance(incident, S.ATTRIBUTING, at)
    if incident.state is not target and can_advance(incident.state, target):
        advance(incident, target, at, None if failed is None else failed.reason)


def move(store: StateStore, incident_id: str, target: IncidentState, at: datetime,
         note: str | None = None) -> Incident:
    """A person's move (``incidents ack|resolve``), atomically in ``store``; the stored result.

    Raises :class:`LifecycleError` (nothing written) for a move the table refuses, and
    :class:`~driftscope_llm.services.errors.NotFoundError` for an unknown id.
    """
    return store.update_incident(incident_id, lambda i: advance(i, target, at, note))


def start_attribution(store: StateStore, incident_id: str, at: datetime) -> Incident:
    """:func:`begin`, atomically in ``store``; the stored result."""
    return store.update_incident(incident_id, lambda i: begin(i, at))


class _AlreadyDone(Exception):
    """Raised inside an atomic update to leave an incident finished meanwhile untouched."""


def finish_attribution(store: StateStore, incident_id: str, report: AttributionReport,
                       at: datetime, rerun: Rerun = Rerun.NEVER) -> Incident | None:
    """:func:`complete`, atomically in ``store``: the stored incident, or ``None`` (nothing
    written) when it became done under ``rerun`` while the job ran, or holds a report that
    ``report`` does not :func:`replace <replaces>`. Updates made meanwhile (the collector's new
    facets and exemplars, an acknowledgement) are kept."""

    def finish(fresh: Incident) -> None:  # may run more than once: no side effects
        if is_done(fresh, rerun) or not replaces(fresh, report):
            raise _AlreadyDone
        complete(fresh, report, at)

    try:
        return store.update_incident(incident_id, finish)
    except _AlreadyDone:
        return None
