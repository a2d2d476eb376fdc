"""The store operations callers used to do by hand, held by the memory and the Redis store.

Atomic incident updates, deletion, the one definition of "open", the worker's job lease and its
report-once marker; and opening the store from settings (prefix, retention) on real Redis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from driftscope_llm.services.config import RedisSettings
from driftscope_llm.services.errors import NotFoundError
from driftscope_llm.services.store import (
    OPEN_STATES,
    Incident,
    IncidentState,
    LifecycleError,
    MemoryStore,
    advance,
    open_store,
)
from driftscope_llm.services.store.base import StateStore
from driftscope_llm.services.store.keys import StoreKeys
from driftscope_llm.services.store.redis_store import RedisStore

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
#: A lease TTL short enough to watch expire, long enough for a heartbeat at a third of it.
LEASE_TTL_S = 0.6


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        client: redis.Redis = request.getfixturevalue("redis_client")
        yield RedisStore(client, key_prefix="ops:", retention_s=3600)


def _incident(ident: str, opened: datetime, *, model: str = "m", segment: str = "all",
              state: IncidentState = IncidentState.OPEN) -> Incident:
    return Incident(id=ident, state=state, opened_at=opened, updated_at=opened, model=model,
                    model_version="v1", segment=segment, signal="length", detector="ks",
                    statistic=2.0, threshold=1.0, effect_size=0.3, event_id=f"{ident}-e")


def test_update_incident_applies_a_change_and_refuses_without_writing(store: StateStore) -> None:
    store.save_incident(_incident("a", T0))
    out = store.update_incident("a", lambda i: advance(i, IncidentState.ACKNOWLEDGED, T0, "me"))
    assert out.state is IncidentState.ACKNOWLEDGED
    assert store.get_incident("a").state_history == [
        {"state": "acknowledged", "at": T0.isoformat(), "reason": "me"}]
    with pytest.raises(LifecycleError):
        store.update_incident("a", lambda i: advance(i, IncidentState.ATTRIBUTING, T0))
    assert store.get_incident("a").state is IncidentState.ACKNOWLEDGED
    assert len(store.get_incident("a").state_history) == 1
    with pytest.raises(NotFoundError):
        store.update_incident("nope", lambda i: None)


def test_concurrent_updates_lose_nothing(store: StateStore) -> None:
    store.save_incident(_incident("a", T0))
    per_thread, threads = 15, 3

    def bump(inc: Incident) -> None:
        inc.updates += 1

    def work() -> None:
        for _ in range(per_thread):
            store.update_incident("a", bump)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert store.get_incident("a").updates == per_thread * threads


def test_delete_incidents_by_id_and_by_opening_time(store: StateStore) -> None:
    for n in range(4):
        store.save_incident(_incident(f"i{n}", T0 + timedelta(hours=n)))
    store.mark_published("i0")
    assert store.delete_incidents(["i0", "ghost"]) == 1
    assert not store.is_published("i0")
    # i1 only: i2 opened exactly at the cutoff, not before it
    assert store.delete_incidents(opened_before=T0 + timedelta(hours=2)) == 1
    assert [i.id for i in store.list_incidents()] == ["i3", "i2"]
    assert store.delete_incidents() == 0


def test_open_means_not_resolved_everywhere(store: StateStore) -> None:
    assert frozenset(IncidentState) - OPEN_STATES == {IncidentState.RESOLVED}
    store.save_incident(_incident("a", T0, segment="s1"))
    store.save_incident(_incident("b", T0 + timedelta(hours=1), segment="s1",
                                  state=IncidentState.ACKNOWLEDGED))
    store.save_incident(_incident("c", T0 + timedelta(hours=2), segment="s2",
                                  state=IncidentState.FAILED))
    store.save_incident(_incident("d", T0 + timedelta(hours=3), segment="s2",
                                  state=IncidentState.RESOLVED))
    assert [i.id for i in store.list_open_incidents()] == ["c", "b", "a"]
    assert [i.id for i in store.list_open_incidents(limit=1)] == ["c"]
    assert store.count_open_incidents() == {("m", "v1", "s1"): 2, ("m", "v1", "s2"): 1}


def test_job_lease_is_exclusive_and_only_its_holder_releases_it(store: StateStore) -> None:
    mine = store.job_lease("inc-1", "worker-a", LEASE_TTL_S)
    theirs = store.job_lease("inc-1", "worker-b", LEASE_TTL_S)
    other_incident = store.job_lease("inc-2", "worker-b", LEASE_TTL_S)
    assert mine.acquire()
    assert not theirs.acquire() and theirs.holder() == "worker-a"
    assert other_incident.acquire()
    theirs.release()  # not theirs to release
    assert mine.held() and not theirs.held()
    mine.release()
    assert mine.holder() is None and theirs.acquire()


def test_job_lease_expires_unless_its_heartbeat_renews_it(store: StateStore) -> None:
    stale = store.job_lease("inc-1", "killed", LEASE_TTL_S)
    assert stale.acquire()
    time.sleep(LEASE_TTL_S * 1.5)  # nobody renews it: a killed worker
    fresh = store.job_lease("inc-1", "alive", LEASE_TTL_S)
    assert fresh.acquire() and not stale.held()
    with fresh:
        time.sleep(LEASE_TTL_S * 2)  # the heartbeat renews it past its TTL
        assert fresh.holder() == "alive" and not fresh.lost.is_set()
    assert fresh.holder() is None  # released on exit


def test_published_marker(store: StateStore) -> None:
    assert not store.is_published("inc-1")
    store.mark_published("inc-1")
    store.mark_published("inc-1")
    assert store.is_published("inc-1") and not store.is_published("inc-2")


def test_open_store_applies_prefix_and_retention(redis_url: str,
                                                 redis_client: redis.Redis) -> None:
    settings = RedisSettings(url=redis_url, key_prefix="os:", retention_s=120)
    store = open_store(settings)
    store.save_incident(_incident("a", T0))
    store.mark_published("a")
    keys = StoreKeys("os:")
    for key in (keys.incident("a"), keys.published("a")):
        assert 0 < redis_client.ttl(key) <= 120
    assert sorted(k.decode() for k in redis_client.keys("*")) == sorted(
        [keys.incident("a"), keys.incident_index, keys.published("a")])
    with pytest.raises(NotFoundError):
        store.get_incident("b")  # a NotFoundError is an answer, not an outage: no retry
