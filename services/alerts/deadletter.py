"""Where a delivery goes when its retry budget is spent: a dead-letter record in a sink.

The notifier writes to a :class:`DeadLetterSink`, the protocol here. In the services it is the
store's Redis list (:class:`RedisDeadLetterSink`, one bounded list, newest first; open it with
:func:`~driftscope_llm.services.store.connect.open_dead_letters`), which lives with
:class:`UndeliveredWebhook` in :mod:`driftscope_llm.services.store.undelivered`, the store being
the one place that touches Redis; both are re-exported here beside :class:`MemoryDeadLetterSink`
for tests and the embedded mode.
"""

from __future__ import annotations

import threading
from typing import Protocol

from driftscope_llm.services.store.undelivered import RedisDeadLetterSink, UndeliveredWebhook

__all__ = ["DeadLetterSink", "MemoryDeadLetterSink", "RedisDeadLetterSink", "UndeliveredWebhook"]


class DeadLetterSink(Protocol):
    def write(self, record: UndeliveredWebhook) -> None:
        """Persist ``record``; raise StoreError when it cannot be kept."""
        ...


class MemoryDeadLetterSink:
    """Keeps records in a list, oldest first (``records``)."""

    def __init__(self) -> None:
        self.records: list[UndeliveredWebhook] = []
        self._lock = threading.Lock()

    def write(self, record: UndeliveredWebhook) -> None:
        with self._lock:
            self.records.append(record)
