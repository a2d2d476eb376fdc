"""The message-bus interface the collector and the worker are written against.

A :class:`Bus` is one consumer-group member plus one producer: what a long-running component
needs from Kafka and nothing more. Two implementations stand behind it:
:class:`~driftscope_llm.services.bus.kafka.KafkaBus` (kafka-python, the product) and
:class:`~driftscope_llm.services.bus.memory.MemoryBus` (in-process, for unit tests of the
delivery logic and for embedded runs). Components never import ``kafka``.

Semantics both implementations keep (Kafka's):

* offsets are per partition; a consumer reads from its *position*, which starts at the group's
  committed offset (or the log start when none) and moves past what :meth:`Bus.poll` returned;
  :meth:`Bus.seek` moves it;
* :meth:`Bus.commit` stores "the next offset to read" for the group; nothing is committed
  automatically, so an uncommitted message is delivered again to the partition's next owner;
* :meth:`Bus.send` may buffer; :meth:`Bus.flush` returns once everything sent is durable;
* failures are :class:`~driftscope_llm.services.errors.BusError`, never a client exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

__all__ = ["Bus", "Message", "Partition", "Publisher", "RebalanceHook"]


class Partition(NamedTuple):
    """One partition of one topic (equal to kafka-python's ``TopicPartition`` of same fields)."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed message: where it sits, its bytes, and when the broker took it.

    ``timestamp`` is the record's broker timestamp in seconds since the epoch (Kafka's
    ``LogAppendTime``, or the producing client's ``CreateTime`` when the topic keeps that), or
    ``None`` when the record has none; it is not the event's own claim of time.
    """

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)
    timestamp: float | None = None


RebalanceHook = Callable[[list[Partition]], None]
"""Called with the partitions just assigned to (or about to be revoked from) this member."""


class Publisher(Protocol):
    """A producer and nothing more: what a deployable that only publishes needs (the OTLP
    receiver). :class:`Bus` implementations are publishers too;
    :class:`~driftscope_llm.services.bus.kafka.KafkaPublisher` is the producer alone."""

    def send(self, topic: str, value: bytes, *, key: bytes | None = None,
             headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """Publish one message (possibly buffered until :meth:`flush`)."""

    def flush(self) -> None:
        """Block until every message sent so far is durable; :class:`BusError` when one is not
        (then the caller must treat all of them as unsent)."""

    def close(self) -> None:
        """Release the connections."""


class Bus(Protocol):
    """One consumer-group member and one producer (module docstring for the semantics)."""

    def subscribe(self, topics: Sequence[str], *, on_assign: RebalanceHook | None = None,
                  on_revoke: RebalanceHook | None = None) -> None:
        """Join the group on ``topics``; the hooks run when partitions move."""

    def poll(self, timeout_s: float) -> dict[Partition, list[Message]]:
        """Messages from the current positions, per partition in offset order (maybe none)."""

    def assignment(self) -> set[Partition]:
        """The partitions this member owns now."""

    def positions(self) -> dict[Partition, int]:
        """The next offset :meth:`poll` will return, for every owned partition."""

    def seek(self, partition: Partition, offset: int) -> None:
        """Read ``partition`` from ``offset`` on."""

    def end_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The offset one past each partition's last message."""

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Store the group's next offset to read per partition; :class:`BusError` on failure."""

    def send(self, topic: str, value: bytes, *, key: bytes | None = None,
             headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """Publish one message (possibly buffered until :meth:`flush`)."""

    def flush(self) -> None:
        """Block until every message sent so far is durable."""

    def close(self) -> None:
        """Leave the group without committing, and release the connections."""
