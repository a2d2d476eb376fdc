"""Per-incident job leases, so one live worker attributes an incident at a time.

A lease is a named token with a time to live. :meth:`Lease.acquire` takes it if nobody holds it;
used as a context manager, a heartbeat thread renews it every third of its TTL while the job runs
and releases it on exit. A worker killed mid-job stops renewing, the lease expires after at most
``ttl_s`` and the redelivered job is taken by the next worker. Renewing and releasing only touch a
lease still holding *our* token, so a lease that expired and was taken by another worker is never
disturbed by the old holder; the old holder sees :attr:`Lease.lost` set.

Two implementations: :class:`RedisLease` (``SET key token NX PX ttl``; compare-and-renew and
compare-and-delete are Lua scripts) shared by every worker replica, and :class:`MemoryLease` for
the embedded mode and unit tests. Get them from the store (``StateStore.job_lease``), which names
the key.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Any

import redis

from driftscope_llm.services.errors import StoreError

__all__ = ["Lease", "MemoryLease", "MemoryLeaseTable", "RedisLease"]

log = logging.getLogger("driftscope.store")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease(ABC):
    """The lease ``key`` held under ``token`` for ``ttl_s``: :meth:`acquire`, then ``with``."""

    def __init__(self, key: str, token: str, ttl_s: float) -> None:
        self.key = key
        self.token = token
        self.ttl_s = ttl_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def acquire(self) -> bool:
        """Take the lease if nobody holds it; ``False`` when someone else does."""

    @abstractmethod
    def holder(self) -> str | None:
        """The token holding the lease now, or ``None``."""

    @abstractmethod
    def held(self) -> bool:
        """Whether the lease is still ours, renewing it for another ``ttl_s`` if so."""

    @abstractmethod
    def release(self) -> None:
        """Give the lease up if it is still ours."""

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.held():
                    log.warning("lost the job lease %s", self.key)
                    self.lost.set()
                    return
            except StoreError as exc:  # keep trying: the lease outlives a short outage
                log.warning("could not renew the job lease %s: %s", self.key, exc)

    def __enter__(self) -> Lease:
        self._thread = threading.Thread(target=self._heartbeat, name="lease-heartbeat",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.release()
        except StoreError as err:  # it expires on its own
            log.warning("could not release the job lease %s: %s", self.key, err)


class RedisLease(Lease):
    """A lease in Redis, shared by every worker replica (module docstring)."""

    def __init__(self, client: redis.Redis[bytes], key: str, token: str, ttl_s: float) -> None:
        super().__init__(key, token, ttl_s)
        self.r = client
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except redis.exceptions.RedisError as exc:
            raise StoreError(f"redis failed to {what}: {exc}", key=self.key) from exc

    def acquire(self) -> bool:
        ok = self._call("take a job lease",
                        lambda: self.r.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return bool(ok)

    def holder(self) -> str | None:
        raw = self._call("read a job lease", lambda: self.r.get(self.key))
        return raw.decode() if isinstance(raw, bytes) else raw

    def held(self) -> bool:
        ok = self._call("renew a job lease",
                        lambda: self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
        return bool(ok)

    def release(self) -> None:
        self._call("release a job lease",
                   lambda: self._release(keys=[self.key], args=[self.token]))


class MemoryLeaseTable:
    """The leases of one :class:`~driftscope_llm.services.store.memory.MemoryStore`:
    key → (token, expiry on ``clock``). Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[str, float]] = {}

    def current(self, key: str) -> str | None:
        """The live holder of ``key`` (call with :attr:`lock` held)."""
        entry = self.entries.get(key)
        if entry is None or entry[1] <= self.clock():
            self.entries.pop(key, None)
            return None
        return entry[0]


class MemoryLease(Lease):
    """A lease in a :class:`MemoryLeaseTable`: one process, same semantics as Redis."""

    def __init__(self, table: MemoryLeaseTable, key: str, token: str, ttl_s: float) -> None:
        super().__init__(key, token, ttl_s)
        self.table = table

    def acquire(self) -> bool:
        with self.table.lock:
            if self.table.current(self.key) is not None:
                return False
            self.table.entries[self.key] = (self.token, self.table.clock() + self.ttl_s)
            return True

    def holder(self) -> str | None:
        with self.table.lock:
            return self.table.current(self.key)

    def held(self) -> bool:
        with self.table.lock:
            if self.table.current(self.key) != self.token:
                return False
            self.table.entries[self.key] = (self.token, self.table.clock() + self.ttl_s)
            return True

    def release(self) -> None:
        with self.table.lock:
            if self.table.current(self.key) == self.token:
                del self.table.entries[self.key]
