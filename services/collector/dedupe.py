"""Repeated deliveries of the same event, recognised and counted once.

At-least-once delivery means an event can reach the topic twice without any fault of the
collector: an OTLP client retries a batch the receiver answered 503 while Kafka was away, and the
producer's buffer delivers the first copy once the broker is back (``docs/collector.md``, chaos
table); a gateway retries a send whose acknowledgement was lost. Counting both copies would bias
every rate and could raise a false alarm.

:class:`RecentEvents` remembers, per input partition, the last ``capacity`` events by what was
delivered — a 128-bit BLAKE2b digest of the message's bytes and the event's position in it (a
retry sends the same bytes; an OTLP export holds many spans) — and reports a repeat. The bytes,
not the event id alone: a client that reuses ids for different events loses nothing.

It lives in memory only: retries come within seconds, and a restart replays from the committed
offset, which the checkpoint already matches, so a restart alone counts nothing twice. What it
cannot see: a repeat more than ``capacity`` events later, a repeat whose first copy came before
this process took the partition (a restart or a rebalance in between), a retry re-encoded with
other bytes, or a repeat on another partition (events are keyed to partitions by model, so only
a producer that changes keys could).

>>> seen = RecentEvents(capacity=2)
>>> raw = b'{"event_id": "a", "ts": "2026-01-01T00:00:00Z", "model": "m", "output": "hi"}'
>>> seen.repeat(raw, 0), seen.repeat(raw, 0), seen.repeat(raw.replace(b"hi", b"ho"), 0)
(False, True, False)
"""

from __future__ import annotations

import hashlib
from collections import deque

__all__ = ["DEFAULT_CAPACITY", "RecentEvents"]

#: events remembered per partition (16 bytes each, twice: about 1 MB)
DEFAULT_CAPACITY = 32_768


class RecentEvents:
    """The digests of the last ``capacity`` events of one partition (module docstring)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._order: deque[bytes] = deque()
        self._seen: set[bytes] = set()

    @staticmethod
    def digest(raw: bytes, position: int) -> bytes:
        h = hashlib.blake2b(raw, digest_size=16)
        h.update(position.to_bytes(8, "little"))
        return h.digest()

    def repeat(self, raw: bytes, position: int) -> bool:
        """Whether event ``position`` of message ``raw`` was seen among the last ``capacity``;
        remembers it if not."""
        key = self.digest(raw, position)
        if key in self._seen:
            return True
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > self.capacity:
            self._seen.discard(self._order.popleft())
        return False
