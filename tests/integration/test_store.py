"""The state-store contract, held by the in-memory store and by the Redis store on real Redis."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from driftscope_llm.services.store import Checkpoint, Exemplar, Incident, IncidentState, MemoryStore
from driftscope_llm.services.store.base import StateStore
from driftscope_llm.services.store.model import dedup_key, incident_id_for
from driftscope_llm.services.store.redis_store import RedisStore

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        client: redis.Redis = request.getfixturevalue("redis_client")
        yield RedisStore(client, key_prefix="t:")


def _incident(event_id: str, at: datetime, model: str = "m", statistic: float = 1.0) -> Incident:
    dk = dedup_key(model, "v1", "all", "refusal", "cusum")
    return Incident(
        id=incident_id_for(dk, event_id), opened_at=at, updated_at=at, model=model,
        model_version="v1", segment="all", signal="refusal", detector="cusum",
        statistic=statistic, threshold=0.5, effect_size=0.04, event_id=event_id,
        exemplars=[Exemplar(event_id=event_id, prompt="p", output="o")],
    )


def test_checkpoint_round_trip(store: StateStore) -> None:
    assert store.load_checkpoint("topic", 3) is None
    cp = Checkpoint(topic="topic", partition=3, next_offset=42, monitors={"s": {"x": [1, 2]}},
                    totals={"s": 41}, saved_at=T0)
    store.save_checkpoint(cp)
    assert store.load_checkpoint("topic", 3) == cp
    assert store.load_checkpoint("topic", 4) is None


def test_continuing_anomaly_updates_one_incident(store: StateStore) -> None:
    dk = dedup_key("m", "v1", "all", "refusal", "cusum")
    first, opened = store.open_or_update_incident(_incident("e1", T0), dk, cooldown_s=60)
    assert opened
    again, opened2 = store.open_or_update_incident(
        _incident("e2", T0 + timedelta(seconds=30), statistic=2.0), dk, cooldown_s=60)
    assert not opened2 and again.id == first.id
    stored = store.get_incident(first.id)
    assert stored.updates == 1 and stored.statistic == 2.0
    assert [e.event_id for e in stored.exemplars] == ["e1", "e2"]
    # the cooldown is extended by each update; after it lapses a new incident opens
    later, opened3 = store.open_or_update_incident(
        _incident("e3", T0 + timedelta(seconds=200)), dk, cooldown_s=60)
    assert opened3 and later.id != first.id


def test_redelivered_anomaly_keeps_its_id(store: StateStore) -> None:
    dk = dedup_key("m", "v1", "all", "refusal", "cusum")
    a, _ = store.open_or_update_incident(_incident("e1", T0), dk, cooldown_s=60)
    b, opened = store.open_or_update_incident(_incident("e1", T0), dk, cooldown_s=60)
    assert a.id == b.id and not opened


def test_previous_version_reference(store: StateStore) -> None:
    assert store.previous_reference("m", "v1", "all") is None
    store.put_reference("m", "v1", "all", {"ref": 1}, first_seen=100.0)
    store.record_version("m", "v2", first_seen=200.0)
    assert store.previous_reference("m", "v2", "all") == {"ref": 1}
    assert store.previous_reference("m", "v1", "all") is None
    assert store.previous_reference("m", "v2", "other-segment") is None
    store.put_reference("m", "v1", "all", {"ref": 2}, first_seen=100.0)  # set once, never replaced
    assert store.previous_reference("m", "v2", "all") == {"ref": 1}


def test_list_and_lifecycle(store: StateStore) -> None:
    for i, model in enumerate(["a", "b", "a"]):
        inc = _incident(f"e{i}", T0 + timedelta(hours=i), model=model)
        store.open_or_update_incident(inc, f"k{i}", cooldown_s=1)
    assert [i.model for i in store.list_incidents()] == ["a", "b", "a"]
    assert len(store.list_incidents(model="a")) == 2
    assert len(store.list_incidents(since=T0 + timedelta(minutes=30))) == 2
    assert len(store.list_incidents(until=T0 + timedelta(minutes=30))) == 1
    first = store.list_incidents()[0]
    first.transition(IncidentState.ACKNOWLEDGED, T0 + timedelta(hours=5))
    store.save_incident(first)
    assert [i.id for i in store.list_incidents(state=IncidentState.ACKNOWLEDGED)] == [first.id]
    assert store.get_incident(first.id).state_history[-1]["state"] == "acknowledged"


def test_two_replicas_open_one_incident(redis_client: redis.Redis) -> None:
    """Replicas racing on the same anomaly key open exactly one incident between them."""
    stores = [RedisStore(redis_client, key_prefix="race:") for _ in range(2)]
    dk = dedup_key("m", "v1", "all", "refusal", "cusum")
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def go(i: int) -> None:
        barrier.wait()
        _, opened = stores[i % 2].open_or_update_incident(
            _incident(f"e{i}", T0 + timedelta(seconds=i)), dk, cooldown_s=600)
        results.append(opened)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    (only,) = stores[0].list_incidents()
    assert only.updates == 7
