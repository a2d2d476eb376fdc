"""The attribution worker service: bus ``driftscope.anomalies`` → attribution → store, bus.

Per anomaly event (one at a time; ``max_poll_records=1``):

1. load the incident from the store; an incident that already has a report (attributed or
   failed) is done — its AttributionEvent is re-sent only if it was never marked as sent;
2. take the incident's job lease from the store (``StateStore.job_lease``). While a live worker
   holds it, wait (its heartbeat keeps it alive); a killed worker's lease expires after
   ``lease_ttl_s`` and the job passes here;
3. move the incident to ``attributing``, run the job (:class:`~driftscope_llm.services.worker.job.Attributor`),
   and store the report with the incident, state ``attributed`` or ``failed`` with a reason;
4. publish an AttributionEvent (flushed), mark it published in the store, notify webhooks if a
   notifier is given;
5. only then commit the event's offset.

At-least-once with one report: a redelivered event finds the report (step 1); two workers on the
same incident are serialised by the lease and the second finds the report after taking it; a
worker that lost its lease mid-job (paused past the TTL) does not store what it computed.
The report is written with the store's atomic ``update_incident`` after the job, so collector
updates made meanwhile (new exemplars, statistics) are kept. Every state change goes through the
lifecycle table (:func:`~driftscope_llm.services.store.lifecycle.advance`): an incident on-call
acknowledged meanwhile keeps its state and gains the report.

The worker is given its bus (one message per poll: ``max_poll_records=1``), store and metrics;
the poll loop and the definition of "idle" are the shared
:class:`~driftscope_llm.services.bus.loop.ConsumerLoop`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from driftscope_llm.services.bus.base import Bus, Message, Partition
from driftscope_llm.services.bus.loop import ConsumerLoop
from driftscope_llm.services.bus.settings import TopicSettings
from driftscope_llm.services.errors import BusError, NotFoundError
from driftscope_llm.services.schemas import AnomalyEvent
from driftscope_llm.services.store.base import StateStore
from driftscope_llm.services.store.lease import Lease
from driftscope_llm.services.store.lifecycle import advance, can_advance
from driftscope_llm.services.store.model import Incident, IncidentState
from driftscope_llm.services.store.attribution_report import (
    AttributedReport,
    FailedReport,
    attribution_event,
)
from driftscope_llm.services.worker.errors import JobFailedError
from driftscope_llm.services.worker.metrics import WorkerMetrics
from driftscope_llm.services.worker.settings import ModelTarget, find_target

__all__ = ["Worker", "consumer_options", "is_done"]

log = logging.getLogger("driftscope.worker")


class _AlreadyDone(Exception):
    """Raised inside an atomic update to leave an incident finished meanwhile untouched."""


class _Job(Protocol):
    def run(self, incident: Incident, target_key: str,
            target: ModelTarget) -> AttributedReport: ...


class _Notifier(Protocol):
    def submit(self, event: str, incident: Incident) -> None: ...


def is_done(incident: Incident) -> bool:
    """An incident needs no job: it has a report, or it was resolved before it got one.

    An incident acknowledged before its report is still attributed (its state stays
    ``acknowledged``; the report is added).
    """
    return incident.attribution is not None or incident.state == IncidentState.RESOLVED


def consumer_options(models: dict[str, ModelTarget], *, lease_ttl_s: float,
                     session_timeout_s: float) -> dict[str, Any]:
    """Kafka consumer timeouts for a worker: a dead worker's partitions move after
    ``session_timeout_s``; a live one may spend its longest job (plus lease waits) on one
    message without being thrown out of the group."""
    longest = max((t.time_limit_s for t in models.values()), default=900.0)
    return {"session_timeout_ms": int(session_timeout_s * 1000),
            "heartbeat_interval_ms": int(session_timeout_s * 1000 / 3),
            "max_poll_interval_ms": int((longest + 2 * lease_ttl_s + 120) * 1000)}


class Worker:
    """One attribution worker replica; ``run()`` loops until ``stop()`` or until it has been
    caught up with every assigned partition for ``max_idle_s``. The bus is closed when ``run()``
    returns."""

    def __init__(
        self,
        store: StateStore,
        attributor: _Job,
        metrics: WorkerMetrics,
        bus: Bus,
        topics: TopicSettings,
        models: dict[str, ModelTarget],
        *,
        lease_ttl_s: float = 120.0,
        notifier: _Notifier | None = None,
        clock: Callable[[], float] = time.time,
        lease_poll_s: float = 1.0,
        settle_s: float = 0.0,
        settle_max_s: float = 60.0,
    ) -> None:
        self.store = store
        self.attributor = attributor
        self.metrics = metrics
        self.bus = bus
        self.topics = topics
        self.models = models
        self.lease_ttl_s = lease_ttl_s
        self.notifier = notifier
        self.clock = clock
        self.lease_poll_s = lease_poll_s
        self.settle_s = settle_s
        self.settle_max_s = settle_max_s
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.loop = ConsumerLoop(bus, [topics.anomalies], self)
        self._stop = self.loop.stopping  # also ends a wait for another worker's lease

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # the loop ----------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self, *, max_idle_s: float | None = None) -> None:
        """Consume until stopped or idle (:class:`ConsumerLoop`), then close the bus."""
        try:
            self.loop.run(max_idle_s=max_idle_s)
        finally:
            self.bus.close()

    # what the loop calls (LoopHandler) ----------------------------------------------------------
    def handle(self, batch: dict[Partition, list[Message]]) -> bool:
        """Each message in turn, its offset committed once it is done; ``False`` when stopping
        while waiting for a lease (that message's offset stays uncommitted)."""
        for tp, records in batch.items():
            for rec in records:
                if not self.handle_message(rec.value):
                    return False
                self._commit(tp, rec.offset + 1)
        return True

    def on_idle(self) -> None:
        """Nothing to do between messages: each is finished before its offset is committed."""

    def on_lag(self, lag: dict[Partition, int]) -> None:
        """The worker exports no lag gauge (``driftscope status`` shows its group's lag)."""

    def _commit(self, tp: Partition, offset: int) -> None:
        try:
            self.bus.commit({tp: offset})
        except BusError as exc:  # rebalanced or broker away: redelivery finds the report
            log.warning("could not commit %s[%d]@%d: %s", tp.topic, tp.partition, offset, exc)

    # one event ----------------------------------------------------------------------------------
    def handle_message(self, raw: bytes) -> bool:
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
        settled = self._settled(incident_id, inc)
        if settled is None:
            self.metrics.skipped.labels("not_found").inc()
            return True
        inc = settled
        lease = self.store.job_lease(incident_id, self.token, self.lease_ttl_s)
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

    def _settled(self, incident_id: str, inc: Incident) -> Incident | None:
        """Wait until a new incident stops gaining facets: no update for ``settle_s`` seconds,
        ``settle_max_s`` at most. One change raises its facets within moments of each other
        (confidence in one stream, refusals in another), and attribution runs once, on the
        settled incident's exemplars, behavioural facets first (services/store/facets.py)."""
        if self.settle_s <= 0 or is_done(inc):
            return inc
        start = quiet_since = time.monotonic()
        seen = inc.updates
        while time.monotonic() - start < self.settle_max_s:
            if self._stop.wait(min(self.lease_poll_s, self.settle_s)):
                return inc
            current = self._load(incident_id)
            if current is None:
                return None
            inc = current
            if current.updates != seen:
                seen, quiet_since = current.updates, time.monotonic()
            elif time.monotonic() - quiet_since >= self.settle_s:
                break
        return inc

    def _move(self, inc: Incident, target: IncidentState, note: str | None = None) -> None:
        """Advance ``inc`` towards ``target`` when the lifecycle allows it (an acknowledged
        incident stays acknowledged); an open or failed one passes through ``attributing``."""
        if target is not IncidentState.ATTRIBUTING and inc.state in (IncidentState.OPEN,
                                                                     IncidentState.FAILED):
            advance(inc, IncidentState.ATTRIBUTING, self._now())
        again = target is IncidentState.ATTRIBUTING  # a retry after a lost worker: recorded
        if (again or inc.state is not target) and can_advance(inc.state, target):
            advance(inc, target, self._now(), note)

    def _attribute(self, incident_id: str, lease: Lease) -> Incident | None:
        inc = self._load(incident_id)
        if inc is None or is_done(inc):  # finished by another worker before our lease
            self.metrics.skipped.labels("done" if inc else "not_found").inc()
            return inc
        try:
            inc = self.store.update_incident(
                incident_id, lambda i: self._move(i, IncidentState.ATTRIBUTING))
        except NotFoundError:
            self.metrics.skipped.labels("not_found").inc()
            return None
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
        state = IncidentState.FAILED if reason else IncidentState.ATTRIBUTED

        def finish(fresh: Incident) -> None:  # may run more than once: no side effects
            if is_done(fresh):
                raise _AlreadyDone
            fresh.attribution = report
            self._move(fresh, state, reason)

        try:
            stored = self.store.update_incident(incident_id, finish)
        except _AlreadyDone:
            return self._load(incident_id)
        except NotFoundError:
            return None
        self.metrics.jobs.labels(state.value).inc()
        self.metrics.seconds.observe(time.perf_counter() - started)
        log.info("incident %s %s%s", incident_id, state.value, f": {reason}" if reason else "")
        return stored

    def _run_job(self, inc: Incident) -> tuple[AttributedReport | FailedReport, str | None]:
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
        return FailedReport(code=code, reason=reason, target=found[0] if found else None,
                            finished_at=self._now()), reason

    # results ------------------------------------------------------------------------------------
    def _ensure_published(self, inc: Incident) -> None:
        """Send the AttributionEvent of a finished incident unless it was marked published."""
        if inc.attribution is None or self.store.is_published(inc.id):
            return
        event = attribution_event(inc.id, inc.attribution)
        self.bus.send(self.topics.attributions, event.model_dump_json().encode(),
                      key=inc.id.encode())
        self.bus.flush()
        self.store.mark_published(inc.id)
