"""Where a delivery goes when its retry budget is spent: a dead-letter record in a sink.

:class:`UndeliveredWebhook` and the Redis sink (:class:`RedisDeadLetterSink`, one bounded Redis list,
newest first) live in the store (:mod:`driftscope_llm.services.store.undelivered`), the one
place that touches Redis; they are re-exported here beside the sink protocol and
:class:`MemoryDeadLetterSink` for tests and the embedded mode.
"""

from __future__ import annotations

import threading
from typing import Protocol

from driftscope_llm.services.store.undelivered import UndeliveredWebhook, RedisDeadLetterSink

__all__ = ["UndeliveredWebhook", "DeadLetterSink", "MemoryDeadLetterSink", "RedisDeadLetterSink"]


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
