"""Durable state behind one interface: Redis for the services, memory for the embedded mode."""

from services.store.base import StateStore
from services.store.memory import MemoryStore
from services.store.model import Checkpoint, Exemplar, Incident, IncidentState

__all__ = ["Checkpoint", "Exemplar", "Incident", "IncidentState", "MemoryStore", "StateStore"]
