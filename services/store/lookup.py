"""What a person typed for an incident, resolved to the stored incident's id.

The rule every command that names one incident follows (``incidents show``, ``ack``,
``resolve``, ``report``, ``probes``, ``attribute``): an id that exists is itself; otherwise the
text is a *prefix*, and the one stored id that starts with it is meant. A prefix that starts no
id is :class:`~driftscope_llm.services.errors.NotFoundError` (exit 4); one that starts several
is :class:`~driftscope_llm.services.errors.AmbiguousIdError` (exit 2), naming a few of them so
the person can type more. ``incidents purge`` deletes, so it takes whole ids only.

>>> from datetime import UTC, datetime
>>> from driftscope_llm.services.store import Incident, MemoryStore
>>> store = MemoryStore()
>>> t = datetime(2026, 3, 1, tzinfo=UTC)
>>> for ident in ("inc-3fa0c1", "inc-3fb9d2"):
...     store.save_incident(Incident(id=ident, opened_at=t, updated_at=t, model="bot",
...         model_version="v1", segment="all", signal="refusal", detector="cusum",
...         statistic=2.0, threshold=1.0, effect_size=0.1, event_id="e1"))
>>> resolve_incident_id(store, "inc-3fb")
'inc-3fb9d2'
>>> try:
...     resolve_incident_id(store, "inc-3f")
... except AmbiguousIdError as exc:
...     print(exc)
incident prefix 'inc-3f' is ambiguous: it starts inc-3fa0c1, inc-3fb9d2; type more of the id
"""

from __future__ import annotations

from driftscope_llm.services.errors import AmbiguousIdError, NotFoundError
from driftscope_llm.services.store.base import StateStore

__all__ = ["SHOWN_MATCHES", "resolve_incident_id"]

#: How many of the ids an ambiguous prefix starts the error names.
SHOWN_MATCHES = 5


def resolve_incident_id(store: StateStore, typed: str) -> str:
    """The id of the incident ``typed`` names: itself when stored, else the one stored id it
    is a prefix of (module docstring for the errors)."""
    if not typed:
        raise NotFoundError("incident", typed)
    found = store.incident_ids_starting(typed, limit=SHOWN_MATCHES + 1)
    if typed in found:
        return typed
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFoundError("incident", typed)
    raise AmbiguousIdError("incident", typed, found[:SHOWN_MATCHES],
                           more=len(found) > SHOWN_MATCHES)
