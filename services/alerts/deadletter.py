"""Where a delivery goes when its retry budget is spent: a dead-letter record in a sink.

:class:`DeadLetter` and the Redis sink (:class:`RedisDeadLetterSink`, one bounded Redis list,
newest first) live in the store (:mod:`driftscope_llm.services.store.deadletters`), the one
place that touches Redis; they are re-exported here beside the sink protocol and
:class:`MemoryDeadLetterSink` for tests and the embedded mode.
"""

from __future__ import annotations

import threading
from typing import Protocol

from driftscope_llm.services.store.deadletters import DeadLetter, RedisDeadLetterSink

__all__ = ["DeadLetter", "DeadLetterSink", "MemoryDeadLetterSink", "RedisDeadLetterSink"]


class DeadLetterSink(Protocol):
    def write(self, record: DeadLetter) -> None:
        """Persist ``record``; raise StoreError when it cannot be kept."""
        ...


class MemoryDeadLetterSink:
    """Keeps records in a list, oldest first (``records``)."""

    def __init__(self) -> None:
        self.records: list[DeadLetter] = []
        self._lock = threading.Lock()

    def write(self, record: DeadLetter) -> None:
        with self._lock:
            self.records.append(record)
