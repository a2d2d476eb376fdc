"""The worker's delivery logic on the in-memory bus and store, without a broker or subprocess.

Invariant: one report per incident and one AttributionEvent per report, however often the
anomaly event is delivered and wherever a worker dies (after storing the report, after
publishing it, before committing).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from driftscope_llm.services.bus import MemoryBroker, MemoryBus, TopicSettings
from driftscope_llm.services.bus.base import Partition
from driftscope_llm.services.schemas import AnomalyEvent
from driftscope_llm.services.store import MemoryStore
from driftscope_llm.services.store.attribution_report import AttributedReport
from driftscope_llm.services.store.model import Incident, IncidentState
from driftscope_llm.services.worker.errors import JobFailedError
from driftscope_llm.services.worker.metrics import WorkerMetrics
from driftscope_llm.services.worker.service import Worker
from driftscope_llm.services.worker.settings import ModelTarget

TOPICS = TopicSettings(anomalies="anomalies", attributions="attributions")
GROUP = "worker"
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
TARGETS = {"support-bot": ModelTarget(model_dir="/models/bot", indexes={"repsim": "/idx"})}


class Crash(Exception):
    """The process dies here."""


class FakeAttributor:
    """Counts jobs; returns a valid attributed report, or fails, or runs ``during`` first."""

    def __init__(self, *, fail: bool = False, during: Any = None) -> None:
        self.calls: list[str] = []
        self.fail, self.during = fail, during

    def run(self, incident: Incident, target_key: str, target: ModelTarget) -> AttributedReport:
        self.calls.append(incident.id)
        if self.during is not None:
            self.during(incident)
        if self.fail:
            raise JobFailedError("index_mismatch", "the index was built for another model",
                                 incident_id=incident.id)
        row = {"id": "ex-7", "rank": 1, "mrr": 1.0, "hits": 2, "best_rank": 1,
               "mean_score": 0.9}
        return AttributedReport.model_validate({
            "status": "attributed", "target": target_key, "model_dir": "/models/bot",
            "model_fingerprint": "f" * 16, "primary_method": "repsim", "top_k": 10,
            "aggregation": "mrr", "aggregate": [row], "methods": {}, "index_manifest_ids": {},
            "exemplars": ["e1"], "started_at": T0.isoformat(), "finished_at": T0.isoformat()})


class CrashingBus(MemoryBus):
    """A member that dies on its first ``send`` or ``commit`` (as configured)."""

    def __init__(self, broker: MemoryBroker, *, on: str) -> None:
        super().__init__(broker, GROUP, max_poll_records=1)
        self.on = on

    def send(self, topic: str, value: bytes, **kw: Any) -> None:
        if self.on == "send":
            raise Crash
        super().send(topic, value, **kw)

    def commit(self, offsets: Any) -> None:
        if self.on == "commit":
            raise Crash
        super().commit(offsets)


def _incident(store: MemoryStore, iid: str = "inc-1") -> None:
    store.save_incident(Incident(
        id=iid, opened_at=T0, updated_at=T0, model="support-bot", model_version="v1",
        segment="billing", signal="refusal", detector="two_proportion", statistic=9.0,
        threshold=3.0, effect_size=0.3, event_id="e1"))


def _announce(broker: MemoryBroker, iid: str = "inc-1", times: int = 1) -> None:
    event = AnomalyEvent(incident_id=iid, kind="opened", model="support-bot", model_version="v1",
                         segment="billing", signal="refusal", detector="two_proportion",
                         statistic=9.0, threshold=3.0, effect_size=0.3, event_id="e1", ts=T0,
                         exemplars=["e1"])
    for _ in range(times):
        broker.append(TOPICS.anomalies, event.model_dump_json().encode())


def _worker(store: MemoryStore, bus: MemoryBus, job: FakeAttributor,
            models: dict[str, ModelTarget] = TARGETS) -> Worker:
    return Worker(store, job, WorkerMetrics(CollectorRegistry()), bus, TOPICS, models,
                  lease_ttl_s=30.0, lease_poll_s=0.01)


def _published(broker: MemoryBroker) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in broker.messages(TOPICS.attributions)]


def _committed(broker: MemoryBroker) -> int | None:
    return broker.committed.get((GROUP, Partition(TOPICS.anomalies, 0)))


def test_a_redelivered_event_is_attributed_once_and_published_once() -> None:
    broker, store, job = MemoryBroker(), MemoryStore(), FakeAttributor()
    _incident(store)
    _announce(broker, times=3)  # the collector's event, delivered three times
    _worker(store, broker.member(GROUP, max_poll_records=1), job).run(max_idle_s=0.0)
    assert job.calls == ["inc-1"]
    (event,) = _published(broker)
    assert (event["incident_id"], event["status"]) == ("inc-1", "attributed")
    assert [row["id"] for row in event["top_examples"]] == ["ex-7"]
    inc = store.get_incident("inc-1")
    assert inc.state is IncidentState.ATTRIBUTED and inc.attribution is not None
    assert [h["state"] for h in inc.state_history] == ["attributing", "attributed"]
    assert store.is_published("inc-1") and _committed(broker) == 3


def test_a_worker_dying_after_storing_the_report_leaves_the_publishing_to_the_next() -> None:
    broker, store, job = MemoryBroker(), MemoryStore(), FakeAttributor()
    _incident(store)
    _announce(broker)
    with pytest.raises(Crash):
        _worker(store, CrashingBus(broker, on="send"), job).run(max_idle_s=0.0)
    assert store.get_incident("inc-1").attribution is not None
    assert not store.is_published("inc-1") and _committed(broker) is None

    _worker(store, broker.member(GROUP, max_poll_records=1), job).run(max_idle_s=0.0)
    assert job.calls == ["inc-1"]  # the redelivered event found the report: no second job
    assert len(_published(broker)) == 1 and _committed(broker) == 1


def test_a_worker_dying_before_its_commit_does_not_publish_twice() -> None:
    broker, store, job = MemoryBroker(), MemoryStore(), FakeAttributor()
    _incident(store)
    _announce(broker)
    with pytest.raises(Crash):
        _worker(store, CrashingBus(broker, on="commit"), job).run(max_idle_s=0.0)
    assert len(_published(broker)) == 1 and _committed(broker) is None

    _worker(store, broker.member(GROUP, max_poll_records=1), job).run(max_idle_s=0.0)
    assert job.calls == ["inc-1"] and len(_published(broker)) == 1
    assert _committed(broker) == 1


def test_failed_jobs_are_stored_and_announced_as_failed_once() -> None:
    broker, store = MemoryBroker(), MemoryStore()
    _incident(store, "inc-1")
    _incident(store, "inc-2")
    _announce(broker, "inc-1", times=2)
    _worker(store, broker.member(GROUP), FakeAttributor(fail=True)).run(max_idle_s=0.0)
    _announce(broker, "inc-2")
    _worker(store, broker.member(GROUP), FakeAttributor(), models={}).run(max_idle_s=0.0)
    events = {e["incident_id"]: e for e in _published(broker)}
    assert len(_published(broker)) == 2
    assert events["inc-1"]["status"] == "failed"
    assert events["inc-1"]["reason"].startswith("index_mismatch: ")
    assert events["inc-2"]["reason"].startswith("no_target: ")
    assert {store.get_incident(i).state for i in events} == {IncidentState.FAILED}


def test_an_incident_acknowledged_during_the_job_keeps_its_state_and_gains_the_report() -> None:
    broker, store = MemoryBroker(), MemoryStore()
    _incident(store)
    _announce(broker)

    def acknowledge(_: Incident) -> None:  # on-call, while the job runs
        store.update_incident("inc-1", lambda i: i.transition(IncidentState.ACKNOWLEDGED, T0))

    _worker(store, broker.member(GROUP), FakeAttributor(during=acknowledge)).run(max_idle_s=0.0)
    inc = store.get_incident("inc-1")
    assert inc.state is IncidentState.ACKNOWLEDGED and inc.attribution is not None
    assert len(_published(broker)) == 1


def test_stopping_while_another_worker_holds_the_lease_leaves_the_event_uncommitted() -> None:
    broker, store, job = MemoryBroker(), MemoryStore(), FakeAttributor()
    _incident(store)
    _announce(broker)
    assert store.job_lease("inc-1", "another-worker", 30.0).acquire()
    worker = _worker(store, broker.member(GROUP), job)
    stopper = threading.Timer(0.2, worker.stop)
    stopper.start()
    worker.run()  # no max_idle_s: only stop() ends it
    stopper.join()
    assert job.calls == [] and _committed(broker) is None and _published(broker) == []
