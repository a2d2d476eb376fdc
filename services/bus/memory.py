"""An in-process bus: Kafka's delivery semantics without a broker.

A :class:`MemoryBroker` holds topics (lists of partitions, each a list of messages) and each
group's committed offsets; a :class:`MemoryBus` is one member of one group on it, with the
semantics of :mod:`driftscope_llm.services.bus.base`. One member per group at a time owns every
partition of its topics (no rebalancing between live members). What it is for:

* unit tests of delivery logic without subprocesses: a member closed without committing hands
  its messages to the next member of the group, exactly as a crashed Kafka consumer does;
* embedded runs where no broker is wanted.

Not for throughput measurements or anything needing several live members in one group.
``fail_commits`` and ``fail_polls`` let a test make the broker refuse, to exercise error paths.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from driftscope_llm.services.bus.base import Message, Partition, RebalanceHook
from driftscope_llm.services.errors import BusError

__all__ = ["MemoryBroker", "MemoryBus"]


class MemoryBroker:
    """Topics and committed offsets shared by the :class:`MemoryBus` members made from it."""

    def __init__(self, *, partitions: int = 1,
                 clock: Callable[[], float] = time.time) -> None:
        self.default_partitions = partitions
        self.clock = clock  # the broker's append time of each message
        self.topics: dict[str, list[list[Message]]] = {}
        self.committed: dict[tuple[str, Partition], int] = {}
        self.fail_commits = False
        self.fail_polls = False
        self._lock = threading.Lock()

    def create_topic(self, name: str, partitions: int | None = None) -> None:
        with self._lock:
            self.topics.setdefault(name, [[] for _ in range(partitions or
                                                             self.default_partitions)])

    def partitions_of(self, topic: str) -> list[Partition]:
        self.create_topic(topic)
        return [Partition(topic, i) for i in range(len(self.topics[topic]))]

    def append(self, topic: str, value: bytes, *, key: bytes | None = None,
               headers: Sequence[tuple[str, bytes]] = (), partition: int | None = None) -> int:
        """Write one message (partition by key hash when not given), stamped with the broker's
        ``clock`` (its append time); returns its offset."""
        self.create_topic(topic)
        with self._lock:
            parts = self.topics[topic]
            if partition is None:
                partition = zlib.crc32(key) % len(parts) if key is not None else 0
            log = parts[partition]
            log.append(Message(topic, partition, len(log), value, key, tuple(headers),
                               self.clock()))
            return len(log) - 1

    def end_offset(self, tp: Partition) -> int:
        """One past the last offset of ``tp`` (0 for a partition never written)."""
        with self._lock:
            parts = self.topics.get(tp.topic, [])
            return len(parts[tp.partition]) if tp.partition < len(parts) else 0

    def messages(self, topic: str) -> list[Message]:
        """Every message of ``topic``, partition by partition (for assertions)."""
        with self._lock:
            return [m for part in self.topics.get(topic, []) for m in part]

    def member(self, group_id: str, *, max_poll_records: int = 500) -> MemoryBus:
        """A new member of ``group_id`` on this broker."""
        return MemoryBus(self, group_id, max_poll_records=max_poll_records)


class MemoryBus:
    """One member of one consumer group on a :class:`MemoryBroker`, and a producer to it."""

    def __init__(self, broker: MemoryBroker, group_id: str, *,
                 max_poll_records: int = 500) -> None:
        self.broker = broker
        self.group_id = group_id
        self.max_poll_records = max_poll_records
        self._topics: list[str] = []
        self._positions: dict[Partition, int] = {}
        self._on_assign: RebalanceHook | None = None
        self._on_revoke: RebalanceHook | None = None
        self._pending: list[tuple[str, bytes, bytes | None, tuple[tuple[str, bytes], ...]]] = []
        self.closed = False

    def subscribe(self, topics: Sequence[str], *, on_assign: RebalanceHook | None = None,
                  on_revoke: RebalanceHook | None = None) -> None:
        self._topics = list(topics)
        self._on_assign, self._on_revoke = on_assign, on_revoke

    def _join(self) -> None:
        """Assign every partition of the subscribed topics at the first poll (as Kafka does)."""
        fresh = [tp for t in self._topics for tp in self.broker.partitions_of(t)
                 if tp not in self._positions]
        if not fresh:
            return
        for tp in fresh:
            self._positions[tp] = self.broker.committed.get((self.group_id, tp), 0)
        if self._on_assign is not None:
            self._on_assign(fresh)

    def poll(self, timeout_s: float) -> dict[Partition, list[Message]]:
        self._check_open()
        if self.broker.fail_polls:
            raise BusError("memory broker: poll refused (fail_polls)")
        self._join()
        out: dict[Partition, list[Message]] = {}
        room = self.max_poll_records
        for tp, pos in self._positions.items():
            if room <= 0:
                break
            batch = self.broker.topics[tp.topic][tp.partition][pos:pos + room]
            if batch:
                out[tp] = batch
                self._positions[tp] = pos + len(batch)
                room -= len(batch)
        return out

    def assignment(self) -> set[Partition]:
        return set(self._positions)

    def positions(self) -> dict[Partition, int]:
        return dict(self._positions)

    def seek(self, partition: Partition, offset: int) -> None:
        self._positions[Partition(*partition)] = offset

    def end_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        return {Partition(*tp): self.broker.end_offset(Partition(*tp)) for tp in partitions}

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        self._check_open()
        if self.broker.fail_commits:
            raise BusError("memory broker: commit refused (fail_commits)")
        for tp, off in offsets.items():
            self.broker.committed[(self.group_id, Partition(*tp))] = off

    def send(self, topic: str, value: bytes, *, key: bytes | None = None,
             headers: Sequence[tuple[str, bytes]] = ()) -> None:
        self._check_open()
        self._pending.append((topic, value, key, tuple(headers)))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for topic, value, key, headers in pending:
            self.broker.append(topic, value, key=key, headers=headers)

    def revoke(self) -> None:
        """A rebalance taking every partition away from this member: the revoke hook runs,
        then the partitions are free for another member (which starts at the committed offsets).
        """
        owned = sorted(self._positions)
        if self._on_revoke is not None and owned:
            self._on_revoke(owned)
        self._positions.clear()
        self._topics = []

    def close(self) -> None:
        """Leave the group without committing; unflushed sends are lost. As with kafka-python's
        ``close``, no revoke hook runs: the owner saves what it wants to keep before closing."""
        self._positions.clear()
        self._pending.clear()
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise BusError(f"memory bus of group {self.group_id!r} is closed")
