"""The attribution worker service: Kafka ``driftscope.anomalies`` → attribution → Redis, Kafka.

Per anomaly event (one at a time; ``max_poll_records=1``):

1. load the incident from the store; an incident that already has a report (attributed or
   failed) is done — its AttributionEvent is re-sent only if it was never marked as sent;
2. take the incident's job lease in Redis (:class:`~services.worker.lease.JobLease`). While a
   live worker holds it, wait (its heartbeat keeps it alive); a killed worker's lease expires
   after ``lease_ttl_s`` and the job passes here;
3. move the incident to ``attributing``, run the job (:class:`~services.worker.job.Attributor`),
   and store the report with the incident, state ``attributed`` or ``failed`` with a reason;
4. publish an AttributionEvent (flushed), mark it sent, notify webhooks if a notifier is given;
5. only then commit the event's offset.

At-least-once with one report: a redelivered event finds the report (step 1); two workers on the
same incident are serialised by the lease and the second finds the report after taking it; a
worker that lost its lease mid-job (paused past the TTL) does not store what it computed.
The report is written on a fresh copy of the incident read after the job, so collector updates
made meanwhile (new exemplars, statistics) are kept, bar a write in the last milliseconds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from driftscope_llm.services.config import KafkaSettings, TopicSettings
from driftscope_llm.services.errors import NotFoundError
from driftscope_llm.services.schemas import AnomalyEvent, AttributionEvent
from driftscope_llm.services.store.base import StateStore
from driftscope_llm.services.store.model import Incident, IncidentState
from driftscope_llm.services.worker.errors import JobFailedError
from driftscope_llm.services.worker.lease import JobLease
from driftscope_llm.services.worker.metrics import WorkerMetrics
from driftscope_llm.services.worker.settings import ModelTarget, find_target

__all__ = ["Worker", "is_done"]

log = logging.getLogger("driftscope.worker")

_WORKER_OWNED = {IncidentState.OPEN, IncidentState.ATTRIBUTING, IncidentState.FAILED}


class _Job(Protocol):
    def run(self, incident: Incident, target_key: str,
            target: ModelTarget) -> dict[str, Any]: ...


class _Notifier(Protocol):
    def submit(self, event: str, incident: Incident) -> None: ...


def is_done(incident: Incident) -> bool:
    """An incident needs no job: it has a report, or it was resolved before it got one.

    An incident acknowledged before its report is still attributed (its state stays
    ``acknowledged``; the report is added).
    """
    return incident.attribution is not None or incident.state == IncidentState.RESOLVED


class Worker:
    """One attribution worker replica; ``run()`` loops until ``stop()`` or ``max_idle_s``."""

    def __init__(
        self,
        store: StateStore,
        client: redis.Redis[bytes],
        attributor: _Job,
        metrics: WorkerMetrics,
        kafka: KafkaSettings,
        topics: TopicSettings,
        models: dict[str, ModelTarget],
        *,
        group_id: str,
        lease_ttl_s: float = 120.0,
        key_prefix: str = "driftscope:",
        notifier: _Notifier | None = None,
        clock: Callable[[], float] = time.time,
        lease_poll_s: float = 1.0,
        session_timeout_s: float = 45.0,
    ) -> None:
        self.store = store
        self.r = client
        self.attributor = attributor
        self.metrics = metrics
        self.topics = topics
        self.models = models
        self.lease_ttl_s = lease_ttl_s
        self.prefix = key_prefix
        self.notifier = notifier
        self.clock = clock
        self.lease_poll_s = lease_poll_s
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        longest = max((t.time_limit_s for t in models.values()), default=900.0)
        common = kafka.client_kwargs()
        self.consumer = KafkaConsumer(
            group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=1, session_timeout_ms=int(session_timeout_s * 1000),
            heartbeat_interval_ms=int(session_timeout_s * 1000 / 3),
            max_poll_interval_ms=int((longest + 2 * lease_ttl_s + 120) * 1000), **common)
        self.producer = KafkaProducer(acks="all", linger_ms=5, **common)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # the loop ----------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self, *, max_idle_s: float | None = None) -> None:
        self.consumer.subscribe([self.topics.anomalies])
        idle_since = self.clock()
        try:
            while not self._stop.is_set():
                batch = self.consumer.poll(timeout_ms=500)
                if not batch:
                    if not self.consumer.assignment():
                        idle_since = self.clock()
                    elif max_idle_s is not None and self.clock() - idle_since > max_idle_s:
                        break
                    continue
                for tp, records in batch.items():
                    for rec in records:
                        if not self.handle(rec.value or b""):
                            return  # stopping while waiting: leave the offset uncommitted
                        self._commit(tp, rec.offset + 1)
                idle_since = self.clock()
        finally:
            self.producer.flush()
            self.consumer.close(autocommit=False)
            self.producer.close()

    def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1)})
        except (CommitFailedError, KafkaError) as exc:  # rebalanced: redelivery finds the report
            log.warning("could not commit %s[%d]@%d: %s", tp.topic, tp.partition, offset, exc)

    # one event ----------------------------------------------------------------------------------
    def handle(self, raw: bytes) -> bool:
        """Process one anomaly message; ``False`` only when stopping before it was finished."""
        try:
            event = AnomalyEvent.model_validate_json(raw)
        except ValidationError as exc:
            log.warning("skipping a malformed anomaly event: %s", exc.errors()[:1])
            self.metrics.skipped.labels("malformed").inc()
            return True
        return self.process(event.incident_id)

    def _load(self, incident_id: str) -> Incident | None:
        try:
            return self.store.get_incident(incident_id)
        except NotFoundError:
            return None

    def process(self, incident_id: str) -> bool:
        """Attribute one incident unless done (module docstring); ``False`` if interrupted."""
        inc = self._load(incident_id)
        if inc is None:
            log.warning("incident %s not found (expired?); skipping", incident_id)
            self.metrics.skipped.labels("not_found").inc()
            return True
        lease = JobLease(self.r, f"{self.prefix}lease:attribution:{incident_id}", self.token,
                         self.lease_ttl_s)
        while True:
            if is_done(inc):
                self.metrics.skipped.labels("done").inc()
                self._ensure_published(inc)
                return True
            if lease.acquire():
                break
            if self._stop.wait(self.lease_poll_s):
                return False
            log.info("incident %s is leased by %s; waiting", incident_id, lease.holder())
            inc = self._load(incident_id)
            if inc is None:
                self.metrics.skipped.labels("not_found").inc()
                return True
        with lease:
            stored = self._attribute(incident_id, lease)
        if stored is not None:
            self._ensure_published(stored)
            if self.notifier is not None:
                self.notifier.submit("incident.attributed", stored)  # failed ones too
        return True

    def _attribute(self, incident_id: str, lease: JobLease) -> Incident | None:
        inc = self._load(incident_id)
        if inc is None or is_done(inc):  # finished by another worker before our lease
            self.metrics.skipped.labels("done" if inc else "not_found").inc()
            return inc
        if inc.state in _WORKER_OWNED:
            inc.transition(IncidentState.ATTRIBUTING, self._now())
            self.store.save_incident(inc)
        started = time.perf_counter()
        self.metrics.in_progress.inc()
        try:
            report, reason = self._run_job(inc)
        finally:
            self.metrics.in_progress.dec()
        if lease.lost.is_set() or not lease.held():
            log.warning("incident %s: lease lost during the job; not storing its report",
                        incident_id)
            self.metrics.skipped.labels("lease_lost").inc()
            return None
        fresh = self._load(incident_id)
        if fresh is None or is_done(fresh):
            return fresh
        fresh.attribution = report
        state = IncidentState.FAILED if reason else IncidentState.ATTRIBUTED
        if fresh.state in _WORKER_OWNED:  # an incident on-call acknowledged keeps its state
            fresh.transition(state, self._now(), reason)
        self.store.save_incident(fresh)
        self.metrics.jobs.labels(state.value).inc()
        self.metrics.seconds.observe(time.perf_counter() - started)
        log.info("incident %s %s%s", incident_id, state.value, f": {reason}" if reason else "")
        return fresh

    def _run_job(self, inc: Incident) -> tuple[dict[str, Any], str | None]:
        found = find_target(self.models, inc.model, inc.model_version)
        try:
            if found is None:
                raise JobFailedError(
                    "no_target", f"no model target configured for {inc.model}@"
                    f"{inc.model_version} (settings: models)", incident_id=inc.id)
            return self.attributor.run(inc, *found), None
        except JobFailedError as exc:
            code, detail = exc.code, exc.detail
        except Exception as exc:  # a bug must not become a crash loop on the same event
            log.exception("incident %s: attribution raised", inc.id)
            code, detail = "internal", f"{type(exc).__name__}: {exc}"
        self.metrics.failures.labels(code).inc()
        reason = f"{code}: {detail}"
        return {"version": 1, "status": "failed", "code": code, "reason": reason,
                "target": found[0] if found else None,
                "finished_at": self._now().isoformat()}, reason

    # results ------------------------------------------------------------------------------------
    def _ensure_published(self, inc: Incident) -> None:
        """Send the AttributionEvent of a finished incident unless it was marked as sent."""
        if inc.attribution is None:
            return
        key = f"{self.prefix}attribution-sent:{inc.id}"
        if self.r.exists(key):
            return
        report = inc.attribution
        status = str(report.get("status", "failed"))
        event = AttributionEvent(
            incident_id=inc.id, status=status, reason=report.get("reason"),
            methods=list(report.get("methods", {})),
            top_examples=list(report.get("aggregate", []))[: int(report.get("top_k", 10))],
            finished_at=datetime.fromisoformat(str(report["finished_at"])),
        )
        self.producer.send(self.topics.attributions, key=inc.id.encode(),
                           value=event.model_dump_json().encode())
        self.producer.flush()
        self.r.set(key, b"1", ex=30 * 24 * 3600)
