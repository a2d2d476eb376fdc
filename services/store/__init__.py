"""Durable state behind one interface: Redis for the services, memory for the embedded mode.

The store owns the incident: its record (:class:`Incident`), its lifecycle (:func:`advance`,
:data:`OPEN_STATES`), its attribution report (:data:`AttributionReport`), and every Redis key
(:mod:`~driftscope_llm.services.store.keys`). Open it from settings with :func:`open_store`.
"""

from driftscope_llm.services.store.attribution_report import (
    AttributedReport,
    AttributionReport,
    FailedReport,
)
from driftscope_llm.services.store.base import StateStore
from driftscope_llm.services.store.connect import open_store
from driftscope_llm.services.store.lease import Lease
from driftscope_llm.services.store.lifecycle import OPEN_STATES, LifecycleError, advance, is_open
from driftscope_llm.services.store.memory import MemoryStore
from driftscope_llm.services.store.model import Checkpoint, Exemplar, Incident, IncidentState

__all__ = [
    "OPEN_STATES",
    "AttributedReport",
    "AttributionReport",
    "Checkpoint",
    "Exemplar",
    "FailedReport",
    "Incident",
    "IncidentState",
    "Lease",
    "LifecycleError",
    "MemoryStore",
    "StateStore",
    "advance",
    "is_open",
    "open_store",
]
