"""A per-incident job lease in Redis, so one live worker attributes an incident at a time.

``SET key token NX PX ttl`` takes the lease; a heartbeat renews it (``PEXPIRE`` only while the
value is still our token) every third of its TTL; release deletes it only while it is ours. A
worker killed mid-job stops renewing, the lease expires after at most ``ttl`` and the redelivered
job is taken by the next worker. Compare-and-renew/delete are Lua scripts, so a lease that expired
and was taken by another worker is never touched by the old holder.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

import redis

from driftscope_llm.services.errors import StoreError

__all__ = ["JobLease"]

log = logging.getLogger("driftscope.worker")

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


class JobLease:
    """The lease on one incident's job. Use :meth:`acquire`, then as a context manager."""

    def __init__(self, client: redis.Redis[bytes], key: str, token: str, ttl_s: float) -> None:
        self.r = client
        self.key = key
        self.token = token
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = threading.Event()

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except redis.exceptions.RedisError as exc:
            raise StoreError(f"redis failed to {what}: {exc}", key=self.key) from exc

    def acquire(self) -> bool:
        """Take the lease if nobody holds it; ``False`` when another worker does."""
        ok = self._call("take a job lease",
                        lambda: self.r.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return bool(ok)

    def holder(self) -> str | None:
        raw = self._call("read a job lease", lambda: self.r.get(self.key))
        return raw.decode() if isinstance(raw, bytes) else raw

    def held(self) -> bool:
        """Whether the lease is still ours (renewing it as a side effect)."""
        ok = self._call("renew a job lease",
                        lambda: self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
        return bool(ok)

    def release(self) -> None:
        self._call("release a job lease",
                   lambda: self._release(keys=[self.key], args=[self.token]))

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.held():
                    log.warning("lost the job lease %s", self.key)
                    self.lost.set()
                    return
            except StoreError as exc:  # keep trying: the lease outlives a short Redis blip
                log.warning("could not renew the job lease %s: %s", self.key, exc)

    def __enter__(self) -> JobLease:
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
