"""Checkpoints survive Redis losing data (issue 28, item 2), on a private redis-server.

The collector rewrites only the stream states that changed since it last wrote them. Once Redis
came back empty (restarted without persistence, failed over to a lagging replica, flushed),
idle streams' states were never written again: the checkpoint listed 10 streams, Redis held 5,
and the next restart said "5 of 10 stream states missing" while their counts claimed thousands
of events. Invariants here, against a Redis restarted without persistence and one with AOF:

* after the restart the collector's next checkpoint holds every stream state again;
* a checkpoint whose states are incomplete restores without the lost streams *and* without
  their counts, and says so (log, ``driftscope_checkpoint_streams_lost_total``).

On 44e8acf, after the restart without persistence the head listed 10 streams and Redis held 5,
and the restore kept the lost streams' counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from driftscope_llm.services.bus import MemoryBroker, MemoryBus, Partition, TopicSettings
from driftscope_llm.services.collector.metrics import CollectorMetrics
from driftscope_llm.services.collector.pipeline import Pipeline
from driftscope_llm.services.collector.service import Collector
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from driftscope_llm.services.config import SegmentSettings
from driftscope_llm.services.drift import DriftSettings, SignalConfig, SignalKind
from driftscope_llm.services.store.keys import StoreKeys
from driftscope_llm.services.store.redis_store import RedisStore
from driftscope_llm.services.store.retry import RetryingStore
from tests.redis_server import Persistence, RedisServer

pytestmark = pytest.mark.slow

SMALL = DriftSettings(reference_size=200, min_reference_values=50, window_size=100,
                      min_window=50, test_every=25, cooldown_events=200,
                      signals={"refusal": SignalConfig(kind=SignalKind.BOOLEAN,
                                                       detectors=("two_proportion",),
                                                       min_effect=0.02)})
ROUTES = SegmentSettings(label="route", allowed=["billing", "shipping", "account", "tech"])
TOPICS = TopicSettings(outputs="in", dead_letter="in.dlq", anomalies="anomalies")
PART = Partition("in", 0)


@pytest.fixture(params=["none", "aof"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    persistence: Persistence = request.param
    srv = RedisServer(tmp_path / f"redis-{persistence}", persistence=persistence).start()
    yield srv
    srv.stop()


class Member:
    """One collector on the in-memory bus with a RedisStore on ``server``, driven poll by poll
    so that the same process lives through a Redis restart."""

    def __init__(self, broker: MemoryBroker, server: RedisServer) -> None:
        self.store = RedisStore(server.client())
        self.metrics = CollectorMetrics(CollectorRegistry())
        store = RetryingStore(self.store, give_up_s=30)
        pipeline = Pipeline(SMALL, SignalExtractor(SignalSettings()), ROUTES, store)
        self.bus = MemoryBus(broker, "collector", max_poll_records=200)
        self.collector = Collector(pipeline, store, self.metrics, self.bus, TOPICS,
                                   checkpoint_every=10_000)
        self.bus.subscribe([TOPICS.outputs], on_assign=self.collector._acquire,
                           on_revoke=self.collector._release)

    def drain(self) -> None:
        """Consume everything there is, then checkpoint (what the loop does when idle)."""
        while batch := self.bus.poll(0):
            self.collector.handle(batch)
        self.collector.on_idle()


def append(broker: MemoryBroker, version: str, n: int, seed: int) -> None:
    for e in generate_events(StreamSpec(n=n, model_version=version, seed=seed,
                                        prefix=f"{version}-{seed}")):
        broker.append(TOPICS.outputs, json.dumps(e).encode())


def stream_keys(server: RedisServer) -> set[bytes]:
    pattern = StoreKeys().checkpoint_stream("in", 0, "x")[:-1] + "*"
    return set(server.client().scan_iter(match=pattern))


def held_streams(server: RedisServer) -> tuple[int, int]:
    """(streams the checkpoint head lists, stream states Redis holds)."""
    head = json.loads(server.client().get(StoreKeys().checkpoint("in", 0)) or b"{}")
    return len(head.get("streams", [])), len(stream_keys(server))


def test_idle_streams_come_back_after_redis_loses_them(server: RedisServer) -> None:
    broker = MemoryBroker()
    append(broker, "v1", 600, seed=1)  # v1: its model-level stream and four routes
    append(broker, "v2", 600, seed=2)  # v2: five more; v1 is idle from here on
    member = Member(broker, server)
    member.drain()
    assert held_streams(server) == (10, 10)

    server.restart()  # empty without persistence; whole with AOF
    append(broker, "v2", 200, seed=3)  # only v2's streams change
    member.drain()

    assert held_streams(server) == (10, 10)
    restored = RedisStore(server.client()).load_checkpoint("in", 0)
    assert restored is not None
    assert restored.lost_streams == []
    assert len(restored.monitors) == 10
    assert restored.next_offset == 1400
    assert restored.totals == member.collector._states[PART].totals


def test_incomplete_checkpoint_restarts_the_lost_streams_and_their_counts(
        server: RedisServer) -> None:
    broker = MemoryBroker()
    append(broker, "v1", 600, seed=1)
    append(broker, "v2", 600, seed=2)
    Member(broker, server).drain()
    client = server.client()
    v1_keys = sorted(k for k in stream_keys(server) if b"|v1|" in k)
    assert len(v1_keys) == 5
    client.delete(*v1_keys)  # what the old collector left behind after a loss

    successor = Member(broker, server)  # the next owner of the partition
    successor.bus.poll(0)  # joins: restores the checkpoint
    state = successor.collector._states[PART]
    assert len(state.monitors) == 5
    assert sorted(state.totals) == sorted(state.monitors)  # no count without its state
    assert all("|v2|" in sid for sid in state.totals)
    assert successor.metrics.streams_lost._value.get() == 5.0


def test_the_deployment_runs_redis_with_aof() -> None:
    """The compose file's Redis persists with AOF, and the k8s manifests say it must."""
    import yaml

    deploy = Path(__file__).resolve().parents[2] / "deploy"
    command = yaml.safe_load((deploy / "compose.yaml").read_text())["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] in ("everysec", "always")
    assert "appendonly yes" in (deploy / "k8s" / "collector.yaml").read_text()
