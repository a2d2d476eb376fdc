"""Durable state in Redis, shared by every collector and worker replica.

Keys (all under ``key_prefix``, default ``driftscope:``):

=====================================  ==========================================================
``cp:{topic}:{partition}``             collector checkpoint (JSON): next offset + detector state
``ref:{model}:{version}:{segment}``    reference snapshot of a stream (JSON), set once
``versions:{model}``                   sorted set: version → first time seen
``incident:{id}``                      incident record (JSON)
``incidents``                          sorted set: id → opened time (for time-range queries)
``live:{dedup key}``                   "id|expires" of the incident a continuing anomaly updates
=====================================  ==========================================================

Claiming the live key and writing a new incident is one Lua script, so two replicas raising the
same anomaly at once still open one incident; cooldowns run on event time, so a replayed backlog
behaves like live traffic.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import redis

from driftscope_llm.services.config import RedisSettings
from driftscope_llm.services.errors import NotFoundError, StoreError
from driftscope_llm.services.store.model import Checkpoint, Incident, IncidentState

__all__ = ["RedisStore", "connect"]

_CLAIM = """
-- KEYS: live key, incidents index.  ARGV: new id, event ts, expires, incident key prefix,
-- retention seconds, new incident JSON, opened-at score.
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local id = string.sub(cur, 1, sep - 1)
  local expires = tonumber(string.sub(cur, sep + 1))
  if tonumber(ARGV[2]) <= expires and redis.call('EXISTS', ARGV[4] .. id) == 1 then
    redis.call('SET', KEYS[1], id .. '|' .. ARGV[3], 'EX', ARGV[5])
    return id
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3], 'EX', ARGV[5])
redis.call('SET', ARGV[4] .. ARGV[1], ARGV[6], 'NX', 'EX', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
return false
"""


def connect(settings: RedisSettings) -> redis.Redis[bytes]:
    """A client for ``settings`` (URL, credentials, TLS, timeouts): every entrypoint uses it."""
    client: redis.Redis[bytes] = redis.Redis.from_url(settings.url, **settings.client_kwargs())
    return client


class RedisStore:
    """A :class:`~services.store.base.StateStore` on a ``redis.Redis`` client passed in."""

    def __init__(self, client: redis.Redis[bytes], *, key_prefix: str = "driftscope:",
                 retention_s: int = 30 * 24 * 3600) -> None:
        self.r = client
        self.p = key_prefix
        self.retention_s = retention_s
        self._claim = self.r.register_script(_CLAIM)

    def _call(self, what: str, fn: Any, *args: Any, key: str | None = None) -> Any:
        try:
            return fn(*args)
        except redis.exceptions.AuthenticationError as exc:
            raise StoreError(f"redis refused the credentials while trying to {what} (check "
                             f"redis.username / redis.password): {exc}", key=key) from exc
        except redis.exceptions.ConnectionError as exc:
            raise StoreError(f"redis unreachable while trying to {what}: {exc}", key=key) from exc
        except redis.exceptions.RedisError as exc:
            raise StoreError(f"redis failed to {what}: {exc}", key=key) from exc

    # checkpoints -------------------------------------------------------------------------
    def load_checkpoint(self, topic: str, partition: int) -> Checkpoint | None:
        key = f"{self.p}cp:{topic}:{partition}"
        raw = self._call("load a checkpoint", self.r.get, key, key=key)
        return Checkpoint.model_validate_json(raw) if raw else None

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        key = f"{self.p}cp:{checkpoint.topic}:{checkpoint.partition}"
        self._call("save a checkpoint", self.r.set, key, checkpoint.model_dump_json(), key=key)

    # references and versions ---------------------------------------------------------------
    def record_version(self, model: str, version: str, first_seen: float) -> None:
        key = f"{self.p}versions:{model}"
        self._call("record a model version",
                   lambda: self.r.zadd(key, {version: first_seen}, nx=True), key=key)

    def put_reference(
        self, model: str, version: str, segment: str, snapshot: dict[str, Any], first_seen: float
    ) -> None:
        self.record_version(model, version, first_seen)
        key = f"{self.p}ref:{model}:{version}:{segment}"
        self._call("store a reference", lambda: self.r.set(key, json.dumps(snapshot), nx=True),
                   key=key)

    def previous_reference(self, model: str, version: str, segment: str) -> dict[str, Any] | None:
        key = f"{self.p}versions:{model}"
        versions: list[tuple[bytes, float]] = self._call(
            "list model versions", lambda: self.r.zrange(key, 0, -1, withscores=True), key=key)
        mine = next((t for v, t in versions if v.decode() == version), float("inf"))
        for v, t in reversed(versions):
            name = v.decode()
            if name == version or t > mine:
                continue
            ref_key = f"{self.p}ref:{model}:{name}:{segment}"
            raw = self._call("load a reference", self.r.get, ref_key, key=ref_key)
            if raw:
                loaded: dict[str, Any] = json.loads(raw)
                return loaded
        return None

    # incidents -------------------------------------------------------------------------------
    def open_or_update_incident(
        self, incident: Incident, dedup: str, cooldown_s: float
    ) -> tuple[Incident, bool]:
        live_key = f"{self.p}live:{dedup}"
        ts = incident.updated_at.timestamp()
        existing = self._call(
            "claim an incident",
            lambda: self._claim(keys=[live_key, f"{self.p}incidents"], args=[
                incident.id, ts, ts + cooldown_s, f"{self.p}incident:", self.retention_s,
                incident.model_dump_json(), incident.opened_at.timestamp()]),
            key=live_key,
        )
        if existing is None:
            return incident, True
        inc_id = existing.decode() if isinstance(existing, bytes) else str(existing)
        return self._update(inc_id, lambda stored: stored.absorb(incident)), False

    def _update(self, incident_id: str, change: Any) -> Incident:
        key = f"{self.p}incident:{incident_id}"

        def txn(pipe: Any) -> Incident:
            raw = pipe.get(key)
            if raw is None:
                raise NotFoundError("incident", incident_id)
            stored = Incident.model_validate_json(raw)
            change(stored)
            pipe.multi()
            pipe.set(key, stored.model_dump_json(), keepttl=True)
            return stored

        result: Incident = self._call(
            "update an incident",
            lambda: self.r.transaction(txn, key, value_from_callable=True),  # type: ignore[no-untyped-call]
            key=key)
        return result

    def get_incident(self, incident_id: str) -> Incident:
        key = f"{self.p}incident:{incident_id}"
        raw = self._call("load an incident", self.r.get, key, key=key)
        if raw is None:
            raise NotFoundError("incident", incident_id)
        return Incident.model_validate_json(raw)

    def save_incident(self, incident: Incident) -> None:
        key = f"{self.p}incident:{incident.id}"
        pipe = self.r.pipeline()
        pipe.set(key, incident.model_dump_json(), ex=self.retention_s)
        pipe.zadd(f"{self.p}incidents", {incident.id: incident.opened_at.timestamp()})
        self._call("save an incident", pipe.execute, key=key)

    def delete_incidents(self, ids: list[str]) -> int:
        """Delete these incident records (and their index entries); how many records existed."""
        if not ids:
            return 0
        pipe = self.r.pipeline()
        pipe.delete(*[f"{self.p}incident:{i}" for i in ids])
        pipe.zrem(f"{self.p}incidents", *ids)
        deleted, _ = self._call("delete incidents", pipe.execute)
        return int(deleted)

    def list_incidents(
        self,
        *,
        model: str | None = None,
        state: IncidentState | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        lo = since.timestamp() if since else "-inf"
        hi = until.timestamp() if until else "+inf"
        ids = self._call("list incidents",
                         lambda: self.r.zrevrangebyscore(f"{self.p}incidents", hi, lo))
        out: list[Incident] = []
        for chunk_start in range(0, len(ids), 200):
            chunk = ids[chunk_start:chunk_start + 200]
            raws = self._call("load incidents", self.r.mget,
                              [f"{self.p}incident:{i.decode()}" for i in chunk])
            for raw in raws:
                if raw is None:  # expired by retention; the index entry is stale
                    continue
                inc = Incident.model_validate_json(raw)
                if (model is None or inc.model == model) and (state is None or inc.state == state):
                    out.append(inc)
                    if len(out) >= limit:
                        return out
        return out
