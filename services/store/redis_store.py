"""Durable state in Redis, shared by every collector and worker replica.

Key names are built in :mod:`driftscope_llm.services.store.keys` (the table of every key is
there). Claiming the live key and writing a new incident is one Lua script, so two replicas
raising the same anomaly at once still open one incident; cooldowns run on event time, so a
replayed backlog behaves like live traffic. Updates to a stored incident are optimistic
transactions (``WATCH``/``MULTI``): a concurrent writer makes the update retry on a fresh read,
so no field written meanwhile is lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from pydantic_core import to_json

from driftscope_llm.services.errors import NotFoundError, StoreError
from driftscope_llm.services.store.keys import StoreKeys
from driftscope_llm.services.store.lease import Lease, RedisLease
from driftscope_llm.services.store.lifecycle import is_open
from driftscope_llm.services.store.model import Checkpoint, Incident, IncidentState

__all__ = ["RedisStore"]

log = logging.getLogger("driftscope.store")


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass
class _Held:
    """What this store believes Redis holds for one partition's checkpoint: the generation
    token of the head it last wrote or read, and each stream state's digest."""

    generation: str | None = None
    digests: dict[str, bytes] = field(default_factory=dict)

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


class RedisStore:
    """A :class:`~driftscope_llm.services.store.base.StateStore` on a ``redis.Redis`` client
    passed in (open one from settings with :func:`~driftscope_llm.services.store.connect.
    open_store`). Incident records, live keys and published markers expire after
    ``retention_s``."""

    def __init__(self, client: redis.Redis[bytes], *, key_prefix: str = "driftscope:",
                 retention_s: int = 30 * 24 * 3600) -> None:
        self.r = client
        self.keys = StoreKeys(key_prefix)
        self.retention_s = retention_s
        self._claim = self.r.register_script(_CLAIM)
        # per partition: the checkpoint generation and stream-state hashes last written or read
        self._written: dict[tuple[str, int], _Held] = {}

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
    # A checkpoint is split per stream (issue 19): the head key holds the offset, totals, the
    # stream ids and a generation token; each stream's detector state has its own key,
    # rewritten only when it changed since this store last wrote or read it. One MULTI/EXEC
    # makes the set atomic, so a reader never sees a head without its streams. Heads written
    # whole by earlier versions (``monitors`` inside) still load.
    #
    # Skipping unchanged states is only right while Redis still holds what this store wrote
    # (issue 28): a Redis restarted without persistence, failed over to a lagging replica, or
    # that lost its last second of an ``everysec`` AOF holds less. Every save therefore reads
    # the head under WATCH first; when its generation is not the one this store last wrote or
    # read, every stream state is rewritten. A connection lost between the read and the write
    # aborts the transaction (WATCH), so the next try reads again.
    def load_checkpoint(self, topic: str, partition: int) -> Checkpoint | None:
        key = self.keys.checkpoint(topic, partition)
        raw = self._call("load a checkpoint", self.r.get, key, key=key)
        held = self._written[(topic, partition)] = _Held()
        if not raw:
            return None
        head: dict[str, Any] = json.loads(raw)
        streams: list[str] = head.pop("streams", [])
        held.generation = head.pop("generation", None)
        if streams:
            keys = [self.keys.checkpoint_stream(topic, partition, sid) for sid in streams]
            states = self._call("load a checkpoint", self.r.mget, keys, key=key)
            found = {sid: s for sid, s in zip(streams, states, strict=True) if s is not None}
            lost = [sid for sid in streams if sid not in found]
            if lost:  # Redis lost them (or someone deleted them): no count without its state
                log.warning("checkpoint %s: %d of %d stream states missing; those streams and "
                            "their counts start afresh", key, len(lost), len(streams))
                totals = head.get("totals") or {}
                head["totals"] = {sid: n for sid, n in totals.items() if sid not in lost}
                head["lost_streams"] = lost
            head["monitors"] = {sid: json.loads(s) for sid, s in found.items()}
            held.digests.update((sid, _digest(s)) for sid, s in found.items())
        return Checkpoint.model_validate(head)

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        topic, partition = checkpoint.topic, checkpoint.partition
        key = self.keys.checkpoint(topic, partition)
        mine = self._written.get((topic, partition), _Held())
        states = {sid: to_json(state) for sid, state in checkpoint.monitors.items()}
        digests = {sid: _digest(s) for sid, s in states.items()}
        head = checkpoint.model_dump(mode="json", exclude={"monitors"})
        head["streams"] = sorted(states)
        head["generation"] = generation = uuid.uuid4().hex

        def write(pipe: Any) -> None:
            raw = pipe.get(key)  # immediate: the pipeline is WATCHing the head
            stored = json.loads(raw) if raw else {}
            trusted = mine.generation is not None and stored.get("generation") == mine.generation
            if not trusted and mine.digests:
                log.warning("checkpoint %s: redis does not hold the checkpoint last written "
                            "(restarted without persistence, failed over or flushed); "
                            "rewriting all %d stream states", key, len(states))
            written = mine.digests if trusted else {}
            listed = set(written) if trusted else set(stored.get("streams") or ())
            pipe.multi()
            for sid, state in states.items():
                if written.get(sid) != digests[sid]:
                    pipe.set(self.keys.checkpoint_stream(topic, partition, sid), state)
            gone = [self.keys.checkpoint_stream(topic, partition, sid)
                    for sid in listed - set(states)]
            if gone:
                pipe.delete(*gone)
            pipe.set(key, json.dumps(head))

        self._call("save a checkpoint",
                   lambda: self.r.transaction(write, key),  # type: ignore[no-untyped-call]
                   key=key)
        self._written[(topic, partition)] = _Held(generation, digests)

    # references and versions ---------------------------------------------------------------
    def record_version(self, model: str, version: str, first_seen: float) -> None:
        key = self.keys.versions(model)
        self._call("record a model version",
                   lambda: self.r.zadd(key, {version: first_seen}, nx=True), key=key)

    def put_reference(
        self, model: str, version: str, segment: str, snapshot: dict[str, Any], first_seen: float
    ) -> None:
        self.record_version(model, version, first_seen)
        key = self.keys.reference(model, version, segment)
        self._call("store a reference", lambda: self.r.set(key, json.dumps(snapshot), nx=True),
                   key=key)

    def previous_reference(self, model: str, version: str, segment: str) -> dict[str, Any] | None:
        key = self.keys.versions(model)
        versions: list[tuple[bytes, float]] = self._call(
            "list model versions", lambda: self.r.zrange(key, 0, -1, withscores=True), key=key)
        mine = next((t for v, t in versions if v.decode() == version), float("inf"))
        for v, t in reversed(versions):
            name = v.decode()
            if name == version or t > mine:
                continue
            ref_key = self.keys.reference(model, name, segment)
            raw = self._call("load a reference", self.r.get, ref_key, key=ref_key)
            if raw:
                loaded: dict[str, Any] = json.loads(raw)
                return loaded
        return None

    # incidents -------------------------------------------------------------------------------
    def open_or_update_incident(
        self, incident: Incident, dedup: str, cooldown_s: float
    ) -> tuple[Incident, bool]:
        live_key = self.keys.live(dedup)
        ts = incident.updated_at.timestamp()
        existing = self._call(
            "claim an incident",
            lambda: self._claim(keys=[live_key, self.keys.incident_index], args=[
                incident.id, ts, ts + cooldown_s, self.keys.incident_prefix, self.retention_s,
                incident.model_dump_json(), incident.opened_at.timestamp()]),
            key=live_key,
        )
        if existing is None:
            return incident, True
        inc_id = existing.decode() if isinstance(existing, bytes) else str(existing)
        return self.update_incident(inc_id, lambda stored: stored.absorb(incident)), False

    def update_incident(self, incident_id: str,
                        change: Callable[[Incident], None]) -> Incident:
        key = self.keys.incident(incident_id)

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
        key = self.keys.incident(incident_id)
        raw = self._call("load an incident", self.r.get, key, key=key)
        if raw is None:
            raise NotFoundError("incident", incident_id)
        return Incident.model_validate_json(raw)

    def incident_ids_starting(self, prefix: str, *, limit: int = 5) -> list[str]:
        """ZSCAN of the incident index (glob characters in ``prefix`` matched literally);
        index entries whose record expired are left out."""
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        found = sorted({m.decode() for m, _ in self._call(
            "find incident ids", lambda: list(self.r.zscan_iter(
                self.keys.incident_index, match=pattern, count=1000)))})
        out: list[str] = []
        for start in range(0, len(found), 200):  # stop once ``limit`` live records are found
            chunk = found[start:start + 200]
            pipe = self.r.pipeline(transaction=False)
            for i in chunk:
                pipe.exists(self.keys.incident(i))
            live = self._call("find incident ids", pipe.execute)
            out += [i for i, n in zip(chunk, live, strict=True) if n]
            if len(out) >= limit:
                break
        return out[:limit]

    def save_incident(self, incident: Incident) -> None:
        key = self.keys.incident(incident.id)
        pipe = self.r.pipeline()
        pipe.set(key, incident.model_dump_json(), ex=self.retention_s)
        pipe.zadd(self.keys.incident_index, {incident.id: incident.opened_at.timestamp()})
        self._call("save an incident", pipe.execute, key=key)

    def delete_incidents(self, ids: Sequence[str] = (), *,
                         opened_before: datetime | None = None) -> int:
        """Delete these incidents and every one opened before ``opened_before``, with their
        index entries and published markers; how many records existed."""
        targets = set(ids)
        if opened_before is not None:
            raw = self._call("list incidents", lambda: self.r.zrangebyscore(
                self.keys.incident_index, "-inf", f"({opened_before.timestamp()}"))
            targets.update(i.decode() for i in raw)
        if not targets:
            return 0
        chosen = sorted(targets)
        pipe = self.r.pipeline()
        pipe.delete(*[self.keys.incident(i) for i in chosen])
        pipe.zrem(self.keys.incident_index, *chosen)
        pipe.delete(*[self.keys.published(i) for i in chosen])
        deleted, _, _ = self._call("delete incidents", pipe.execute)
        return int(deleted)

    def _scan(self, since: datetime | None, until: datetime | None) -> Iterator[Incident]:
        """Stored incidents opened in [since, until], newest first (expired ones skipped)."""
        lo = since.timestamp() if since else "-inf"
        hi = until.timestamp() if until else "+inf"
        ids = self._call("list incidents",
                         lambda: self.r.zrevrangebyscore(self.keys.incident_index, hi, lo))
        for chunk_start in range(0, len(ids), 200):
            chunk = ids[chunk_start:chunk_start + 200]
            raws = self._call("load incidents", self.r.mget,
                              [self.keys.incident(i.decode()) for i in chunk])
            for raw in raws:
                if raw is not None:  # None: expired by retention; the index entry is stale
                    yield Incident.model_validate_json(raw)

    def list_incidents(
        self,
        *,
        model: str | None = None,
        state: IncidentState | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        out: list[Incident] = []
        for inc in self._scan(since, until):
            if (model is None or inc.model == model) and (state is None or inc.state == state):
                out.append(inc)
                if len(out) >= limit:
                    break
        return out

    def list_open_incidents(self, *, limit: int = 500) -> list[Incident]:
        out: list[Incident] = []
        for inc in self._scan(None, None):
            if is_open(inc.state):
                out.append(inc)
                if len(out) >= limit:
                    break
        return out

    def count_open_incidents(self) -> dict[tuple[str, str, str], int]:
        counts: dict[tuple[str, str, str], int] = {}
        for inc in self._scan(None, None):
            if is_open(inc.state):
                key = (inc.model, inc.model_version, inc.segment)
                counts[key] = counts.get(key, 0) + 1
        return counts

    # the worker's job lease and report-once marker ------------------------------------------
    def job_lease(self, incident_id: str, token: str, ttl_s: float) -> Lease:
        return RedisLease(self.r, self.keys.job_lease(incident_id), token, ttl_s)

    def is_published(self, incident_id: str) -> bool:
        key = self.keys.published(incident_id)
        return bool(self._call("read a published marker", self.r.exists, key, key=key))

    def mark_published(self, incident_id: str) -> None:
        key = self.keys.published(incident_id)
        self._call("mark a report published",
                   lambda: self.r.set(key, b"1", ex=self.retention_s), key=key)
