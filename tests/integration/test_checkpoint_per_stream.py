"""Checkpoints split per stream (issue 19, failure 2): on ec31e46 one partition's checkpoint was
one Redis value holding every stream's detector state (40 MB with 10,000 models), rewritten
whole at every checkpoint. Now the head holds the offset, totals and stream ids, each stream's
state has its own key, and a save rewrites only the streams that changed. On real Redis.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import redis

from driftscope_llm.services.store.keys import StoreKeys
from driftscope_llm.services.store.model import Checkpoint
from driftscope_llm.services.store.redis_store import RedisStore

T0 = datetime(2026, 11, 28, 10, tzinfo=UTC)


def _checkpoint(offset: int, monitors: dict[str, dict[str, object]]) -> Checkpoint:
    return Checkpoint(topic="llm.outputs", partition=2, next_offset=offset, monitors=monitors,
                      totals={sid: offset for sid in monitors}, saved_at=T0)


def test_a_checkpoint_is_one_head_plus_one_key_per_stream(redis_client: redis.Redis) -> None:
    keys = StoreKeys()
    cp = _checkpoint(10, {"a|v1|all": {"n": 1}, "a|v1|route=x": {"n": 2},
                          "b:c|v|all": {"n": [3.5, None]}})
    RedisStore(redis_client).save_checkpoint(cp)
    head = json.loads(redis_client.get(keys.checkpoint("llm.outputs", 2)) or b"")
    assert "monitors" not in head and head["next_offset"] == 10
    assert head["streams"] == sorted(cp.monitors)
    for sid, state in cp.monitors.items():
        raw = redis_client.get(keys.checkpoint_stream("llm.outputs", 2, sid))
        assert raw is not None and json.loads(raw) == state
    assert RedisStore(redis_client).load_checkpoint("llm.outputs", 2) == cp  # another process


def test_a_save_rewrites_only_the_streams_that_changed(redis_client: redis.Redis) -> None:
    keys = StoreKeys()
    store = RedisStore(redis_client)
    store.save_checkpoint(_checkpoint(10, {"idle": {"n": 1}, "busy": {"n": 1}, "gone": {}}))
    idle_key = keys.checkpoint_stream("llm.outputs", 2, "idle")
    redis_client.set(idle_key, b'{"n": "untouched"}')  # a marker: survives if not rewritten
    store.save_checkpoint(_checkpoint(20, {"idle": {"n": 1}, "busy": {"n": 2}}))
    assert redis_client.get(idle_key) == b'{"n": "untouched"}'
    assert json.loads(redis_client.get(keys.checkpoint_stream("llm.outputs", 2, "busy"))
                      or b"") == {"n": 2}
    assert redis_client.get(keys.checkpoint_stream("llm.outputs", 2, "gone")) is None
    loaded = RedisStore(redis_client).load_checkpoint("llm.outputs", 2)
    assert loaded is not None and loaded.next_offset == 20 and set(loaded.monitors) == {
        "idle", "busy"}


def test_a_checkpoint_written_whole_by_an_earlier_version_still_loads(
        redis_client: redis.Redis) -> None:
    cp = _checkpoint(7, {"m|v|all": {"n": 1}})
    redis_client.set(StoreKeys().checkpoint("llm.outputs", 2), cp.model_dump_json())
    assert RedisStore(redis_client).load_checkpoint("llm.outputs", 2) == cp
