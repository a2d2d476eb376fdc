"""The attribution worker service: bus ``driftscope.anomalies`` → attribution → store, bus.

Per anomaly event (one at a time; ``max_poll_records=1``), :meth:`Worker.process` waits for the
incident to settle, then :meth:`Worker.attribute` — the one way an attribution is finished, also
what ``driftscope attribute ID`` runs:

1. load the incident from the store; one that is done
   (:func:`~driftscope_llm.services.store.lifecycle.is_done`: it has a report, attributed or
   failed) needs no job — its AttributionEvent is re-sent only if it was never marked as sent;
2. take the incident's job lease from the store (``StateStore.job_lease``). While a live worker
   holds it, wait (its heartbeat keeps it alive); a killed worker's lease expires after
   ``lease_ttl_s`` and the job passes here;
3. move the incident to ``attributing``
   (:func:`~driftscope_llm.services.store.lifecycle.start_attribution`), run the job
   (:class:`~driftscope_llm.services.worker.job.Attributor`), and store the report with the
   incident (:func:`~driftscope_llm.services.store.lifecycle.finish_attribution`: state
   ``attributed``, or ``failed`` with a reason);
4. publish an AttributionEvent (flushed), mark it published in the store, notify webhooks
   (``incident.attributed``) if a notifier is given;
5. (the consumer path) only then commit the event's offset.

At-least-once with one report: a redelivered event finds the report (step 1); two workers on the
same incident are serialised by the lease and the second finds the report after taking it; a
worker that lost its lease mid-job (paused past the TTL) does not store what it computed.
The report is written with the store's atomic ``update_incident`` after the job, so collector
updates made meanwhile (new exemplars, statistics) are kept. Every state change is the store's
lifecycle (:mod:`~driftscope_llm.services.store.lifecycle`): an incident on-call
acknowledged meanwhile keeps its state and gains the report. A re-run on demand
(``rerun``: :class:`~driftscope_llm.services.store.lifecycle.Rerun`) treats a failed, or any,
report as not done; its new report is published and announced like the first.

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
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import ValidationError

from driftscope_llm.services.bus.base import Bus, Message, Partition
from driftscope_llm.services.bus.loop import ConsumerLoop
from driftscope_llm.services.bus.settings import TopicSettings
from driftscope_llm.services.errors import BusError, NotFoundError
from driftscope_llm.services.schemas import AnomalyEvent
from driftscope_llm.services.store.attribution_report import (
    AttributedReport,
    AttributionReport,
    FailedReport,
    attribution_event,
)
from driftscope_llm.services.store.base import StateStore
from driftscope_llm.services.store.lease import Lease
from driftscope_llm.services.store.lifecycle import (
    Rerun,
    finish_attribution,
    is_done,
    replaces,
    start_attribution,
)
from driftscope_llm.services.store.model import Incident
from driftscope_llm.services.worker.errors import JobFailedError
from driftscope_llm.services.worker.metrics import WorkerMetrics
from driftscope_llm.services.worker.settings import ModelTarget, find_target

__all__ = ["Attempt", "AttributionJob", "Outcome", "Worker", "consumer_options"]

log = logging.getLogger("driftscope.worker")


class AttributionJob(Protocol):
    """What the worker runs per incident: :class:`~driftscope_llm.services.worker.job.Attributor`
    (tests hand in their own)."""

    def run(self, incident: Incident, target_key: str,
            target: ModelTarget) -> AttributedReport: ...


class _Notifier(Protocol):
    def submit(self, event: str, incident: Incident) -> None: ...


class Outcome(StrEnum):
    """How one :meth:`Worker.attribute` ended."""

    STORED = "stored"
    """A job ran; its report is stored, published and announced."""
    KEPT = "kept"
    """A forced re-run failed; the incident keeps its attributed report (``report``: the
    failure; nothing stored or announced)."""
    DONE = "done"
    """Nothing to run: the incident was done (its event re-sent if it never was)."""
    NOT_FOUND = "not_found"
    """No such incident (expired, purged, or a wrong id)."""
    LEASE_LOST = "lease_lost"
    """The job ran past its lease (paused beyond the TTL): its report was not stored."""
    STOPPED = "stopped"
    """:meth:`Worker.stop` ended the wait for another worker's lease."""


@dataclass(frozen=True)
class Attempt:
    """What :meth:`Worker.attribute` did, the incident as stored afterwards (if any) and the
    report of the job it ran (if one ran)."""

    outcome: Outcome
    incident: Incident | None = None
    report: AttributionReport | None = None


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
        attributor: AttributionJob,
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
        self._closed = False

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
            self.close()

    def close(self) -> None:
        """Close the bus once (``run()`` does; a caller of :meth:`attribute` alone must)."""
        if not self._closed:
            self._closed = True
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
        """The consumer path: let a new incident settle, then :meth:`attribute` it; ``False``
        only when stopped before it was finished."""
        inc = self._load(incident_id)
        if inc is None:
            log.warning("incident %s not found (expired?); skipping", incident_id)
            self.metrics.skipped.labels("not_found").inc()
            return True
        settled = self._settled(incident_id, inc)
        if settled is None:
            self.metrics.skipped.labels("not_found").inc()
            return True
        return self.attribute(incident_id, loaded=settled).outcome is not Outcome.STOPPED

    def attribute(self, incident_id: str, *, rerun: Rerun = Rerun.NEVER,
                  loaded: Incident | None = None) -> Attempt:
        """Attribute one incident unless it is done under ``rerun`` (module docstring, steps
        1-4): the worker's path and ``driftscope attribute ID``'s. ``loaded``: the incident
        as just read, to save a read."""
        inc = loaded if loaded is not None else self._load(incident_id)
        lease = self.store.job_lease(incident_id, self.token, self.lease_ttl_s)
        while True:
            if inc is None:
                self.metrics.skipped.labels("not_found").inc()
                return Attempt(Outcome.NOT_FOUND)
            if is_done(inc, rerun):
                self.metrics.skipped.labels("done").inc()
                self._ensure_published(inc)
                return Attempt(Outcome.DONE, inc)
            if lease.acquire():
                break
            if self._stop.wait(self.lease_poll_s):
                return Attempt(Outcome.STOPPED, inc)
            log.info("incident %s is leased by %s; waiting", incident_id, lease.holder())
            inc = self._load(incident_id)
        with lease:
            attempt = self._attribute(incident_id, lease, rerun)
        if attempt.outcome is Outcome.DONE and attempt.incident is not None:
            self._ensure_published(attempt.incident)
        elif attempt.outcome is Outcome.STORED and attempt.incident is not None:
            self._publish(attempt.incident)
            if self.notifier is not None:
                self.notifier.submit("incident.attributed", attempt.incident)  # failed too
        return attempt

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

    def _attribute(self, incident_id: str, lease: Lease, rerun: Rerun) -> Attempt:
        """Under the lease: begin, run the job, store its report (lifecycle functions)."""
        inc = self._load(incident_id)
        if inc is None or is_done(inc, rerun):  # finished by another worker before our lease
            self.metrics.skipped.labels("done" if inc else "not_found").inc()
            return Attempt(Outcome.DONE if inc else Outcome.NOT_FOUND, inc)
        try:
            inc = start_attribution(self.store, incident_id, self._now())
        except NotFoundError:
            self.metrics.skipped.labels("not_found").inc()
            return Attempt(Outcome.NOT_FOUND)
        started = time.perf_counter()
        self.metrics.in_progress.inc()
        try:
            report = self._run_job(inc)
        finally:
            self.metrics.in_progress.dec()
        if lease.lost.is_set() or not lease.held():
            log.warning("incident %s: lease lost during the job; not storing its report",
                        incident_id)
            self.metrics.skipped.labels("lease_lost").inc()
            return Attempt(Outcome.LEASE_LOST, None, report)
        try:
            stored = finish_attribution(self.store, incident_id, report, self._now(), rerun)
        except NotFoundError:
            return Attempt(Outcome.NOT_FOUND)
        if stored is None:  # nothing written (lifecycle.finish_attribution says why)
            current = self._load(incident_id)
            if current is not None and not replaces(current, report):
                self.metrics.jobs.labels(report.status).inc()
                return Attempt(Outcome.KEPT, current, report)
            return Attempt(Outcome.DONE, current)  # done meanwhile by a writer without the lease
        self.metrics.jobs.labels(report.status).inc()
        self.metrics.seconds.observe(time.perf_counter() - started)
        log.info("incident %s %s%s", incident_id, report.status,
                 f": {report.reason}" if isinstance(report, FailedReport) else "")
        return Attempt(Outcome.STORED, stored, report)

    def _run_job(self, inc: Incident) -> AttributionReport:
        found = find_target(self.models, inc.model, inc.model_version)
        try:
            if found is None:
                raise JobFailedError(
                    "no_target", f"no model target configured for {inc.model}@"
                    f"{inc.model_version} (settings: models)", incident_id=inc.id)
            return self.attributor.run(inc, *found)
        except JobFailedError as exc:
            code, detail = exc.code, exc.detail
        except Exception as exc:  # a bug must not become a crash loop on the same event
            log.exception("incident %s: attribution raised", inc.id)
            code, detail = "internal", f"{type(exc).__name__}: {exc}"
        self.metrics.failures.labels(code).inc()
        reason = f"{code}: {detail}"
        return FailedReport(code=code, reason=reason, target=found[0] if found else None,
                            finished_at=self._now())

    # results ------------------------------------------------------------------------------------
    def _ensure_published(self, inc: Incident) -> None:
        """Send the AttributionEvent of a finished incident unless it was marked published."""
        if inc.attribution is not None and not self.store.is_published(inc.id):
            self._publish(inc)

    def _publish(self, inc: Incident) -> None:
        """Send the AttributionEvent of the report just stored (flushed), then mark it sent."""
        if inc.attribution is None:
            return
        event = attribution_event(inc.id, inc.attribution)
        self.bus.send(self.topics.attributions, event.model_dump_json().encode(),
                      key=inc.id.encode())
        self.bus.flush()
        self.store.mark_published(inc.id)
