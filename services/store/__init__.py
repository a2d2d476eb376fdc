"""Durable state behind one interface: Redis for the services, memory for the embedded mode."""

from driftscope_llm.services.store.base import StateStore
from driftscope_llm.services.store.memory import MemoryStore
from driftscope_llm.services.store.model import Checkpoint, Exemplar, Incident, IncidentState

__all__ = ["Checkpoint", "Exemplar", "Incident", "IncidentState", "MemoryStore", "StateStore"]
