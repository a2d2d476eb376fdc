"""The Kafka bus (kafka-python): the only module that constructs Kafka clients.

:class:`KafkaBus` is one consumer-group member and one ``acks=all`` producer
behind the :class:`~driftscope_llm.services.bus.base.Bus` interface; :class:`KafkaPublisher` is
the producer alone behind :class:`~driftscope_llm.services.bus.base.Publisher`, for deployables
that only publish (the OTLP receiver); :func:`consumer_lag` is the
read-only look at group offsets that ``driftscope status`` shows. Every kafka-python exception is
turned into a :class:`~driftscope_llm.services.errors.BusError` naming the bootstrap address (and
the topic/partition when there is one), so callers handle one error type.

kafka-python runs the rebalance hooks from inside :meth:`KafkaBus.poll`, possibly while the
caller's own code holds locks of its own; the hooks must not call back into the bus's blocking
operations other than :meth:`KafkaBus.seek`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from driftscope_llm.services.bus.base import Message, Partition, RebalanceHook
from driftscope_llm.services.bus.settings import ConsumerSettings, KafkaSettings
from driftscope_llm.services.errors import BusError

__all__ = ["GroupLag", "KafkaBus", "KafkaPublisher", "consumer_lag", "kafka_producer"]


def _tp(p: Partition) -> TopicPartition:
    return TopicPartition(p.topic, p.partition)


def _p(tp: Any) -> Partition:
    return Partition(tp.topic, tp.partition)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_assign: RebalanceHook | None, on_revoke: RebalanceHook | None) -> None:
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self.on_revoke is not None:
            self.on_revoke([_p(tp) for tp in revoked])

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.on_assign is not None:
            self.on_assign([_p(tp) for tp in assigned])


class KafkaBus:
    """One member of ``group_id`` plus a producer, both from ``settings``.

    ``consumer`` sets the fetch and poll sizes (:class:`ConsumerSettings`, the collector's);
    without it a poll returns up to ``max_poll_records``. ``consumer_options`` are passed to
    ``KafkaConsumer`` on top of these and the defaults (no auto-commit, read from the earliest
    offset when the group has none): the worker uses them for its session and poll-interval
    timeouts.
    """

    def __init__(self, settings: KafkaSettings, *, group_id: str, max_poll_records: int = 500,
                 consumer_options: Mapping[str, Any] | None = None,
                 consumer: ConsumerSettings | None = None) -> None:
        self.address = settings.bootstrap_servers
        common = settings.client_kwargs()
        fetch = consumer.consumer_kwargs() if consumer is not None else {
            "max_poll_records": max_poll_records}
        options = {"group_id": group_id, "enable_auto_commit": False,
                   "auto_offset_reset": "earliest", **fetch, **(consumer_options or {})}
        try:
            self.consumer = KafkaConsumer(**options, **common)
            self.producer = KafkaProducer(acks="all", linger_ms=5, **common)
        except KafkaError as exc:
            raise self._error("cannot connect", exc) from exc

    def _error(self, what: str, exc: Exception, tp: Partition | None = None) -> BusError:
        return BusError(f"kafka at {self.address}: {what}: {type(exc).__name__}: {exc}",
                        address=self.address, topic=tp.topic if tp else None,
                        partition=tp.partition if tp else None)

    def subscribe(self, topics: Sequence[str], *, on_assign: RebalanceHook | None = None,
                  on_revoke: RebalanceHook | None = None) -> None:
        self.consumer.subscribe(list(topics), listener=_Listener(on_assign, on_revoke))

    def poll(self, timeout_s: float) -> dict[Partition, list[Message]]:
        try:
            raw = self.consumer.poll(timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:  # broker away: kafka-python reconnects on the next poll
            raise self._error("poll failed", exc) from exc
        return {
            _p(tp): [Message(r.topic, r.partition, r.offset, r.value or b"", r.key,
                             tuple(r.headers or ()), _seconds(r.timestamp)) for r in records]
            for tp, records in raw.items()
        }

    def assignment(self) -> set[Partition]:
        return {_p(tp) for tp in self.consumer.assignment()}

    def positions(self) -> dict[Partition, int]:
        out = {}
        for tp in self.consumer.assignment():
            try:
                out[_p(tp)] = int(self.consumer.position(tp, timeout_ms=5000))
            except KafkaError as exc:
                raise self._error("position unknown", exc, _p(tp)) from exc
        return out

    def seek(self, partition: Partition, offset: int) -> None:
        self.consumer.seek(_tp(partition), offset)

    def end_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        tps = [_tp(p) for p in partitions]
        if not tps:
            return {}
        try:
            ends = self.consumer.end_offsets(tps)
        except KafkaError as exc:
            raise self._error("end offsets unavailable", exc) from exc
        return {_p(tp): int(end) for tp, end in ends.items()}

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        try:
            self.consumer.commit({_tp(p): OffsetAndMetadata(off, "", -1)
                                  for p, off in offsets.items()})
        except KafkaError as exc:  # CommitFailedError after a rebalance, or the broker away
            raise self._error("commit failed", exc) from exc

    def send(self, topic: str, value: bytes, *, key: bytes | None = None,
             headers: Sequence[tuple[str, bytes]] = ()) -> None:
        try:
            self.producer.send(topic, key=key, value=value, headers=list(headers) or None)
        except KafkaError as exc:
            raise self._error(f"send to {topic} failed", exc) from exc

    def flush(self) -> None:
        try:
            self.producer.flush()
        except KafkaError as exc:
            raise self._error("flush failed", exc) from exc

    def close(self) -> None:
        try:
            self.producer.flush()
        finally:
            self.consumer.close(autocommit=False)
            self.producer.close()


def _seconds(timestamp_ms: int | None) -> float | None:
    """A record's timestamp in seconds; ``None`` for the "no timestamp" marker (-1)."""
    return None if timestamp_ms is None or timestamp_ms < 0 else timestamp_ms / 1000.0


def kafka_producer(settings: KafkaSettings, **options: Any) -> KafkaProducer:
    """A kafka-python producer (``acks=all``, 5 ms linger unless ``options`` say otherwise), for
    a publisher that needs send futures and timed flushes; :class:`BusError` if it cannot start.
    """
    try:
        return KafkaProducer(**{"acks": "all", "linger_ms": 5, **options},
                             **settings.client_kwargs())
    except KafkaError as exc:
        raise BusError(f"kafka at {settings.bootstrap_servers}: cannot connect: "
                       f"{type(exc).__name__}: {exc}", address=settings.bootstrap_servers) from exc


class KafkaPublisher:
    """An ``acks=all`` producer behind :class:`~driftscope_llm.services.bus.base.Publisher`.

    :meth:`flush` waits up to ``timeout_s`` and then checks every message the *calling thread*
    sent since its last flush, raising :class:`BusError` (with the topic) for the first one the
    broker did not acknowledge: a threaded server (the OTLP receiver, one thread per request)
    learns the fate of its own request's messages, never another's. ``options`` go to the
    producer (e.g. ``max_block_ms``).
    """

    def __init__(self, settings: KafkaSettings, *, timeout_s: float = 10.0,
                 **options: Any) -> None:
        self.address = settings.bootstrap_servers
        self.timeout_s = timeout_s
        self.producer = kafka_producer(settings, **options)
        self._sent = threading.local()

    def _error(self, what: str, exc: Exception, topic: str | None = None) -> BusError:
        return BusError(f"kafka at {self.address}: {what}: {type(exc).__name__}: {exc}",
                        address=self.address, topic=topic)

    def _pending(self) -> list[tuple[str, Any]]:
        pending: list[tuple[str, Any]] | None = getattr(self._sent, "pending", None)
        if pending is None:
            pending = self._sent.pending = []
        return pending

    def send(self, topic: str, value: bytes, *, key: bytes | None = None,
             headers: Sequence[tuple[str, bytes]] = ()) -> None:
        try:
            future = self.producer.send(topic, key=key, value=value,
                                        headers=list(headers) or None)
        except KafkaError as exc:
            raise self._error(f"send to {topic} failed", exc, topic) from exc
        self._pending().append((topic, future))

    def flush(self) -> None:
        pending = self._pending()
        sent, pending[:] = list(pending), []
        try:
            self.producer.flush(timeout=self.timeout_s)
        except KafkaError as exc:
            raise self._error("flush failed", exc) from exc
        for topic, future in sent:
            try:
                future.get(timeout=self.timeout_s)  # raises the send's own error, if any
            except KafkaError as exc:
                raise self._error(f"{topic} did not acknowledge", exc, topic) from exc

    def close(self) -> None:
        try:
            self.producer.flush(timeout=self.timeout_s)
        except KafkaError:
            pass  # what was not acknowledged was already reported by flush(), or is lost
        finally:
            self.producer.close(timeout=self.timeout_s)


@dataclass(frozen=True, slots=True)
class GroupLag:
    """One partition of a group: its committed offset, the log end, and the difference."""

    topic: str
    partition: int
    committed: int
    end: int | None
    lag: int


def consumer_lag(settings: KafkaSettings, groups: Sequence[str], *,
                 request_timeout_ms: int = 6000,
                 coordinator_wait_s: float = 15.0) -> dict[str, list[GroupLag]]:
    """Per group, the lag of every partition it has committed offsets for (sorted).

    A broker that has just started answers the offsets request with a retriable error until
    its group coordinator has loaded (``GroupCoordinatorNotAvailable``,
    ``CoordinatorLoadInProgress``); such errors are retried for up to ``coordinator_wait_s``
    before the cluster counts as not answering. Raises :class:`BusError` when the cluster
    cannot be reached or does not answer.
    """
    address = settings.bootstrap_servers
    kw = {**settings.client_kwargs(), "request_timeout_ms": request_timeout_ms}
    if not any(_accepts(server, request_timeout_ms / 1000) for server in address.split(",")):
        # kafka-python leaves the sockets of a client whose constructor failed open; a plain
        # TCP probe first means an unreachable cluster never gets that far
        raise BusError(f"kafka at {address}: no bootstrap server accepts connections",
                       address=address)
    try:
        admin = KafkaAdminClient(**kw)
    except Exception as exc:  # any client failure here means "unreachable"
        raise BusError(f"kafka at {address}: {type(exc).__name__}: {exc}",
                       address=address) from exc
    consumer: KafkaConsumer | None = None
    try:
        consumer = KafkaConsumer(**kw)
        offsets = _group_offsets(admin, groups, coordinator_wait_s) if groups else {}
        out: dict[str, list[GroupLag]] = {}
        for group in groups:
            committed = offsets.get(group) or {}
            ends = consumer.end_offsets(list(committed)) if committed else {}
            out[group] = [GroupLag(tp.topic, tp.partition, meta.offset, ends.get(tp),
                                   max(ends.get(tp, meta.offset) - meta.offset, 0))
                          for tp, meta in sorted(committed.items())]
        return out
    except Exception as exc:  # a broker that answers the handshake but not the requests
        raise BusError(f"kafka at {address}: {type(exc).__name__}: {exc}",
                       address=address) from exc
    finally:
        admin.close()
        if consumer is not None:
            consumer.close()


def _group_offsets(admin: KafkaAdminClient, groups: Sequence[str],
                   wait_s: float) -> Any:
    """``admin.list_group_offsets`` retried while the error is retriable and ``wait_s`` lasts."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return admin.list_group_offsets(list(groups))
        except KafkaError as exc:
            if not getattr(exc, "retriable", False) or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def _accepts(server: str, timeout_s: float) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout_s``."""
    host, _, port = server.strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port)),
                                      timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False
