"""The :class:`Notifier`: tell every configured endpoint that an incident opened, was updated or
attributed (or that Prometheus alerts fired), and record what could not be delivered.

The collector and worker call ``notify(event, incident)``; delivery to each endpoint retries with
backoff (see :mod:`driftscope_llm.services.alerts.delivery`), so a call can take as long as the
slowest endpoint's retry budget. A process that must not stall on a dead endpoint wraps the
notifier in
:class:`BackgroundNotifier`, which delivers from a thread of its own through a bounded queue.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from driftscope_llm.services.alerts.alertmanager import AlertmanagerMessage
from driftscope_llm.services.alerts.deadletter import DeadLetterSink, UndeliveredWebhook
from driftscope_llm.services.alerts.delivery import DeliveryResult, deliver
from driftscope_llm.services.alerts.payload import (
    Notification,
    alert_notification,
    incident_notification,
    render,
)
from driftscope_llm.services.alerts.settings import EventKind, WebhookSettings
from driftscope_llm.services.alerts.transport import HttpTransport
from driftscope_llm.services.errors import StoreError
from driftscope_llm.services.store.model import Incident

__all__ = ["BackgroundNotifier", "Notifier", "WebhookMetrics"]

log = logging.getLogger("driftscope.alerts")


class WebhookMetrics:
    """Delivery metrics, on the registry of the process that notifies.

    ``driftscope_webhook_deliveries_total{endpoint,outcome}`` (outcome ``delivered`` |
    ``dead_lettered``), ``driftscope_webhook_attempts_total{endpoint}`` (every POST made),
    ``driftscope_webhook_queue_depth`` (notifications waiting in a BackgroundNotifier).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "driftscope_webhook_deliveries_total", "Webhook deliveries, by how they ended.",
            ["endpoint", "outcome"], registry=registry)
        self.attempts = Counter(
            "driftscope_webhook_attempts_total", "HTTP POSTs made to webhook endpoints.",
            ["endpoint"], registry=registry)
        self.queue_depth = Gauge(
            "driftscope_webhook_queue_depth", "Notifications waiting to be delivered.",
            registry=registry)


class Notifier:
    """Deliver notifications to the endpoints of ``settings``.

    Side effects come in: ``transport`` (HTTP), ``dead_letters`` (where failures are recorded),
    ``clock`` (Unix seconds), ``sleep`` and ``rng`` (backoff jitter). Thread-safe as long as the
    transport and sink are.
    """

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        transport: HttpTransport,
        dead_letters: DeadLetterSink,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        metrics: WebhookMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.dead_letters = dead_letters
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.metrics = metrics
        if metrics is not None:
            # every series exists at 0 from the start: a labelled counter born at its first
            # increment hides that increment from rate() and increase() (and from the alerts)
            for endpoint in settings.endpoints:
                metrics.attempts.labels(endpoint.name)
                for outcome in ("delivered", "dead_lettered"):
                    metrics.deliveries.labels(endpoint.name, outcome)

    def notify(self, event: EventKind | str, incident: Incident) -> list[DeliveryResult]:
        """Send ``event`` (``incident.opened``, ``incident.updated`` or ``incident.attributed``)
        about ``incident`` to every endpoint subscribed to it; one result per endpoint."""
        return self.send(incident_notification(EventKind(event), incident))

    def notify_alerts(self, message: AlertmanagerMessage) -> list[DeliveryResult]:
        """Relay one Alertmanager notification (``alert.firing`` / ``alert.resolved``)."""
        return self.send(alert_notification(message))

    def send(self, n: Notification) -> list[DeliveryResult]:
        sent_at = datetime.fromtimestamp(self.clock(), UTC)
        results = []
        for endpoint in self.settings.endpoints:
            if n.event not in endpoint.events:
                continue
            body = render(n, endpoint.format, sent_at, endpoint.include_text)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": self.settings.user_agent,
                "X-Driftscope-Event": n.event.value,
                "X-Driftscope-Delivery": n.delivery_id,
            }
            result = deliver(
                endpoint, body, headers, event=n.event.value, delivery_id=n.delivery_id,
                subject=n.subject, transport=self.transport, clock=self.clock,
                sleep=self.sleep, rng=self.rng,
            )  # fmt: skip
            self._record(result)
            results.append(result)
        return results

    def _record(self, result: DeliveryResult) -> None:
        if self.metrics is not None:
            self.metrics.attempts.labels(result.endpoint).inc(result.attempts)
            outcome = "delivered" if result.delivered else "dead_lettered"
            self.metrics.deliveries.labels(result.endpoint, outcome).inc()
        if result.dead_letter is None:
            return
        log.warning(
            "webhook %s: %s %s not delivered after %d attempt(s) (status %s, error %s); "
            "dead-lettered", result.endpoint, result.dead_letter.event, result.delivery_id,
            result.attempts, result.status, result.error,
        )
        self._dead_letter(result.dead_letter)

    def _dead_letter(self, record: UndeliveredWebhook) -> None:
        try:
            self.dead_letters.write(record)
        except StoreError as exc:
            # the record cannot be kept: say so loudly, with everything but the body
            log.error(
                "webhook %s: dead-letter record for %s (%s) could not be written: %s",
                record.endpoint, record.delivery_id, record.event, exc,
            )


class BackgroundNotifier:
    """Runs a :class:`Notifier` on one thread of its own, fed by a bounded queue.

    ``submit`` never blocks: when ``max_queue`` notifications already wait, the new one is
    dead-lettered for every subscribed endpoint with reason ``queue_full`` (so nothing is dropped
    silently). ``close`` lets the thread finish what is queued, up to ``timeout_s``.
    """

    def __init__(self, notifier: Notifier, max_queue: int = 1000) -> None:
        self.notifier = notifier
        self._queue: queue.Queue[Notification | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="driftscope-webhooks", daemon=True)
        self._thread.start()

    def submit(self, event: EventKind | str, incident: Incident) -> None:
        self._put(incident_notification(EventKind(event), incident))

    def submit_alerts(self, message: AlertmanagerMessage) -> None:
        self._put(alert_notification(message))

    def _put(self, n: Notification) -> None:
        try:
            self._queue.put_nowait(n)
        except queue.Full:
            self._overflow(n)
        self._gauge()

    def _overflow(self, n: Notification) -> None:
        now = datetime.fromtimestamp(self.notifier.clock(), UTC)
        for endpoint in self.notifier.settings.endpoints:
            if n.event not in endpoint.events:
                continue
            body = render(n, endpoint.format, now, endpoint.include_text).decode()
            log.warning("webhook %s: queue full; %s dead-lettered unsent",
                        endpoint.name, n.delivery_id)
            self.notifier._dead_letter(UndeliveredWebhook(
                endpoint=endpoint.name, event=n.event.value, delivery_id=n.delivery_id,
                subject=n.subject, reason="queue_full", attempts=0, last_status=None,
                last_error=None, first_attempt_at=now, failed_at=now,
                content_type="application/json", body=body,
            ))  # fmt: skip
            if self.notifier.metrics is not None:
                self.notifier.metrics.deliveries.labels(endpoint.name, "dead_lettered").inc()

    def _gauge(self) -> None:
        if self.notifier.metrics is not None:
            self.notifier.metrics.queue_depth.set(self._queue.qsize())

    def _run(self) -> None:
        while True:
            n = self._queue.get()
            try:
                if n is None:
                    return
                self.notifier.send(n)
            except Exception:  # a bug in one delivery must not end every later one
                log.exception("webhook delivery of %s failed unexpectedly",
                              n.delivery_id if n else "?")
            finally:
                self._queue.task_done()
                self._gauge()

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stop after the queued notifications; True when the thread ended within the timeout."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return False
        self._thread.join(timeout_s)
        return not self._thread.is_alive()
