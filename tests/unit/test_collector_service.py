"""The collector's delivery logic on the in-memory bus and store, without a broker or subprocess.

Invariants: offsets are committed only after the checkpoint holding them is saved (and what was
sent before it flushed); a crash anywhere, or a commit the broker refuses, changes nothing in the
end state: detector state, totals and incidents equal those of one uninterrupted run.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from driftscope_llm.services.bus import MemoryBroker, MemoryBus, Partition, TopicSettings
from driftscope_llm.services.collector.metrics import CollectorMetrics
from driftscope_llm.services.collector.pipeline import Pipeline
from driftscope_llm.services.collector.service import Collector
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.config import SegmentSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.store import MemoryStore
from driftscope_llm.services.store.model import Checkpoint

SMALL = DriftSettings(reference_size=400, min_reference_values=100, window_size=200,
                      min_window=50, test_every=25, cooldown_events=200)
TOPICS = TopicSettings(outputs="in", dead_letter="in.dlq", anomalies="anomalies")
GROUP = "collector"
N = 1500  # refusals jump on billing from event 900: anomalies in every run below


class Crash(Exception):
    """The process dies here (not a StoreError/BusError the collector would handle)."""


class RecordingStore(MemoryStore):
    def __init__(self, log: list[tuple[Any, ...]], crash_at_save: int | None = None) -> None:
        super().__init__()
        self.log, self.crash_at_save, self.saves = log, crash_at_save, 0

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.saves += 1
        if self.saves == self.crash_at_save:
            raise Crash
        super().save_checkpoint(checkpoint)
        self.log.append(("checkpoint", Partition(checkpoint.topic, checkpoint.partition),
                         checkpoint.next_offset))


class RecordingBus(MemoryBus):
    def __init__(self, broker: MemoryBroker, log: list[tuple[Any, ...]]) -> None:
        super().__init__(broker, GROUP, max_poll_records=100)
        self.log = log

    def flush(self) -> None:
        super().flush()
        self.log.append(("flush",))

    def commit(self, offsets: Any) -> None:
        super().commit(offsets)
        self.log.append(("commit", dict(offsets)))


def _broker(n: int = N, *, extra: tuple[bytes, ...] = ()) -> MemoryBroker:
    broker = MemoryBroker()
    spec = StreamSpec(n=n, seed=3, drifts=(Drift(start=900, route="billing", refusal_rate=0.6),))
    for e in generate_events(spec):
        broker.append(TOPICS.outputs, json.dumps(e).encode())
    for raw in extra:
        broker.append(TOPICS.outputs, raw)
    return broker


def _collector(broker: MemoryBroker, store: MemoryStore, log: list[tuple[Any, ...]],
               *, checkpoint_every: int = 300) -> Collector:
    pipeline = Pipeline(SMALL, SignalExtractor(SignalSettings()),
                        SegmentSettings(label="route", allowed=["billing", "shipping"]), store)
    return Collector(pipeline, store, CollectorMetrics(CollectorRegistry()),
                     RecordingBus(broker, log), TOPICS, checkpoint_every=checkpoint_every)


def _end_state(store: MemoryStore) -> tuple[Any, ...]:
    cp = store.load_checkpoint(TOPICS.outputs, 0)
    assert cp is not None
    incidents = sorted((i.id, i.signal, i.detector) for i in store.list_incidents(limit=1000))
    return cp.next_offset, cp.totals, cp.monitors, incidents


def _straight_run() -> tuple[Any, ...]:
    store = RecordingStore([])
    _collector(_broker(), store, []).run(max_idle_s=0.0)
    return _end_state(store)


def test_offsets_are_committed_only_after_the_checkpoint_that_holds_them() -> None:
    log: list[tuple[Any, ...]] = []
    store = RecordingStore(log)
    broker = _broker()
    _collector(broker, store, log).run(max_idle_s=0.0)

    commits = [i for i, e in enumerate(log) if e[0] == "commit"]
    assert len(commits) >= N // 300  # checkpoint_every=300 over N events, and the final one
    for i in commits:
        for tp, offset in log[i][1].items():
            saved = [j for j, e in enumerate(log[:i]) if e[0] == "checkpoint" and e[1] == tp
                     and e[2] == offset]
            assert saved, f"commit of {tp}@{offset} without a checkpoint before it"
            flushed = [j for j, e in enumerate(log[:saved[-1]]) if e[0] == "flush"]
            assert flushed, "checkpoint saved before the anomalies sent were flushed"
    assert broker.committed[(GROUP, Partition(TOPICS.outputs, 0))] == N
    assert _end_state(store)[0] == N
    assert broker.messages(TOPICS.anomalies), "the planted drift raised no anomaly"


@pytest.mark.parametrize("crash_at_save", [2, 4])
def test_a_crash_before_the_commit_replays_without_double_counting(crash_at_save: int) -> None:
    straight = _straight_run()
    broker, log = _broker(), []
    store = RecordingStore(log, crash_at_save=crash_at_save)
    with pytest.raises(Crash):
        _collector(broker, store, log).run(max_idle_s=0.0)
    committed = broker.committed.get((GROUP, Partition(TOPICS.outputs, 0)), 0)
    assert committed < N  # the crash left events after the last commit to be redelivered

    store.crash_at_save = None
    _collector(broker, store, log).run(max_idle_s=0.0)  # the next member of the group
    assert _end_state(store) == straight


def test_a_refused_commit_costs_nothing_the_checkpoint_holds_the_offset() -> None:
    straight = _straight_run()
    broker, store = _broker(), RecordingStore([])
    broker.fail_commits = True
    _collector(broker, store, []).run(max_idle_s=0.0)
    assert (GROUP, Partition(TOPICS.outputs, 0)) not in broker.committed
    broker.fail_commits = False
    # the group redelivers everything; the next owner seeks to the checkpoint and skips it all
    second = _collector(broker, store, [])
    second.run(max_idle_s=0.0)
    assert _end_state(store) == straight
    assert broker.committed[(GROUP, Partition(TOPICS.outputs, 0))] == N


def test_a_revoked_partition_is_checkpointed_and_taken_over_where_it_stopped() -> None:
    straight = _straight_run()
    broker, store, log = _broker(), RecordingStore([]), []
    first = _collector(broker, store, log, checkpoint_every=10_000)
    bus = first.bus
    assert isinstance(bus, MemoryBus)
    bus.subscribe([TOPICS.outputs], on_assign=first.loop.on_assign,  # what loop.run does first
                  on_revoke=first.loop.on_revoke)
    for _ in range(6):  # 600 events, no checkpoint due yet
        first.handle(bus.poll(0.0))
    bus.revoke()  # a rebalance: the revoke hook checkpoints without committing
    cp = store.load_checkpoint(TOPICS.outputs, 0)
    assert cp is not None and cp.next_offset == 600
    _collector(broker, store, []).run(max_idle_s=0.0)
    assert _end_state(store) == straight


def test_invalid_messages_go_to_the_dead_letter_topic_and_are_committed_past() -> None:
    broker, store = _broker(200, extra=(b"{not json", b'{"event_id": "x"}')), RecordingStore([])
    _collector(broker, store, []).run(max_idle_s=0.0)
    letters = [json.loads(m.value) for m in broker.messages(TOPICS.dead_letter)]
    assert [(d["source_offset"], d["reason"]) for d in letters] == [
        (200, "not_json"), (201, "missing_field")]
    assert broker.committed[(GROUP, Partition(TOPICS.outputs, 0))] == 202
