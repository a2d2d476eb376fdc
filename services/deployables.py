"""Every deployable assembled from its settings, in one place.

One ``build_<component>(settings)`` per deployable: :func:`build_collector`,
:func:`build_worker`, :func:`build_otlp_receiver` and :func:`build_alert_receiver`. Each takes
the deployable's settings model (:mod:`driftscope_llm.services.config`, loaded once by the
caller), opens what the component needs (the state store, the bus or a publisher, the webhook
notifier with its dead-letter list), gives the component only the sub-settings it uses, and
returns a :class:`Deployable`. The CLI commands (``collector``, ``worker``, ``attribute``,
``ingest``, ``alerts receive``) run what these return, and the tests build components the same
way: a keyword argument hands in a store, a bus, a publisher, a dead-letter sink or a registry
of the test's own (side effects come in as arguments).

Building opens connections (an unreachable Redis or Kafka is a
:class:`~driftscope_llm.services.errors.StoreError` or
:class:`~driftscope_llm.services.errors.BusError`) and the receivers bind their port (an
``OSError`` when it is taken, after closing what was opened), but nothing is started: no
consumer joins its group, no request is served, no metrics endpoint is exposed (that, and
the run loop, stay with the entry point).

This module sits above :mod:`~driftscope_llm.services.config` (it reads the deployables'
settings) and below the CLI (docs/architecture.md, layer 9).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry

from driftscope_llm.services.alerts.build import build_notifier, relay_notifier
from driftscope_llm.services.alerts.deadletter import DeadLetterSink
from driftscope_llm.services.alerts.notifier import BackgroundNotifier
from driftscope_llm.services.alerts.receiver import AlertReceiver
from driftscope_llm.services.alerts.settings import WebhookSettings
from driftscope_llm.services.bus.base import Bus, Publisher
from driftscope_llm.services.bus.kafka import KafkaBus, KafkaPublisher
from driftscope_llm.services.bus.preflight import check_kafka_auth
from driftscope_llm.services.collector.build import build_pipeline
from driftscope_llm.services.collector.cardinality import StreamCaps
from driftscope_llm.services.collector.metrics import CollectorMetrics
from driftscope_llm.services.collector.service import Collector
from driftscope_llm.services.config import (
    AlertsSettings,
    CollectorSettings,
    IngestServiceSettings,
    WorkerSettings,
)
from driftscope_llm.services.errors import ConfigError
from driftscope_llm.services.ingest.content_join import ContentJoin
from driftscope_llm.services.ingest.decode import IngestMetrics, RecordDecoder
from driftscope_llm.services.otlp_receiver.server import KafkaSink, OtlpReceiver, ReceiverMetrics
from driftscope_llm.services.store.base import StateStore
from driftscope_llm.services.store.connect import open_dead_letters, open_store
from driftscope_llm.services.store.settings import RedisSettings
from driftscope_llm.services.worker.metrics import WorkerMetrics
from driftscope_llm.services.worker.service import AttributionJob, Worker, consumer_options

__all__ = ["Deployable", "build_alert_receiver", "build_collector", "build_otlp_receiver",
           "build_worker"]

log = logging.getLogger("driftscope")

C = TypeVar("C")

#: How long the worker lets a new incident settle (no new facet) before attributing it: one
#: change raises its facets within moments of each other (60 s at most, the worker's default).
WORKER_SETTLE_S = 5.0


@dataclass
class Deployable(Generic[C]):
    """A component as built: the component, the metrics registry it reports on, its webhook
    notifier (``None`` without endpoints) and what must be released after it.

    :meth:`close` releases what building opened, the notifier last so queued webhooks are
    delivered. A long-running component's ``run()`` already closes its own bus (:meth:`close`
    is safe after it); a receiver that was started is stopped by its caller first.
    """

    component: C
    registry: CollectorRegistry
    notifier: BackgroundNotifier | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        try:
            for close in reversed(self.closers):
                close()
        finally:
            if self.notifier is not None:
                self.notifier.close()


def _notifier(webhooks: WebhookSettings, redis: RedisSettings, registry: CollectorRegistry,
              dead_letters: DeadLetterSink | None) -> BackgroundNotifier | None:
    """The webhook notifier of a deployable; the dead-letter list is opened only when there is
    an endpoint to fail."""
    if not webhooks.endpoints:
        return None
    if dead_letters is None:
        dead_letters = open_dead_letters(redis, key=webhooks.dead_letter_key,
                                         max_len=webhooks.dead_letter_max)
    return build_notifier(webhooks, dead_letters, registry)


def build_collector(settings: CollectorSettings, *, store: StateStore | None = None,
                    bus: Bus | None = None, registry: CollectorRegistry | None = None,
                    dead_letters: DeadLetterSink | None = None) -> Deployable[Collector]:
    """The collector of ``settings``: its pipeline (detectors, signals, segments, embedder,
    redaction, stream caps), the state store, a Kafka member of ``settings.group_id`` and the
    webhook notifier of incident events."""
    registry = registry if registry is not None else CollectorRegistry()
    if bus is None:
        check_kafka_auth(settings.kafka)  # wrong SASL credentials: a clear error now
    store = store if store is not None else open_store(settings.redis)
    metrics = CollectorMetrics(registry)
    caps = StreamCaps(settings.cardinality, on_fold=metrics.count_fold)
    pipeline = build_pipeline(
        settings.drift, settings.signals, settings.segments, settings.embedder, store,
        cooldown_s=settings.cooldown_s, redaction=settings.redaction, caps=caps,
        clock=settings.clock,
        on_segment_fold=lambda label: metrics.count_fold("segment", label))
    notifier = _notifier(settings.webhooks, settings.redis, registry, dead_letters)
    if bus is None:
        bus = KafkaBus(settings.kafka, group_id=settings.group_id, consumer=settings.consumer)
    decoder = RecordDecoder(settings.ingest, max_event_bytes=settings.max_event_bytes,
                            metrics=IngestMetrics(registry),
                            join=ContentJoin(settings.ingest.content_join))
    collector = Collector(pipeline, store, metrics, bus, settings.topics,
                          max_event_bytes=settings.max_event_bytes,
                          checkpoint_every=settings.checkpoint_every,
                          notify=notifier.submit if notifier is not None else None,
                          decoder=decoder)
    return Deployable(collector, registry, notifier)


def build_worker(settings: WorkerSettings, *, store: StateStore | None = None,
                 bus: Bus | None = None, registry: CollectorRegistry | None = None,
                 dead_letters: DeadLetterSink | None = None,
                 attributor: AttributionJob | None = None,
                 settle_s: float = WORKER_SETTLE_S, lease_poll_s: float = 1.0
                 ) -> Deployable[Worker]:
    """The attribution worker of ``settings``: the job (:class:`Attributor` on
    ``settings.device`` unless ``attributor`` is given), the state store, a Kafka member of
    ``settings.group_id`` taking one message per poll (timeouts from
    :func:`~driftscope_llm.services.worker.service.consumer_options`) and the webhook notifier
    of ``incident.attributed``. ``driftscope attribute ID`` builds the same worker and calls
    :meth:`Worker.attribute` once; :meth:`Deployable.close` then closes its bus and delivers
    its webhook."""
    registry = registry if registry is not None else CollectorRegistry()
    if bus is None:
        check_kafka_auth(settings.kafka)
    store = store if store is not None else open_store(settings.redis)
    if attributor is None:
        from driftscope_llm.services.worker.job import Attributor

        attributor = Attributor(device=settings.device)
    if not settings.models:
        log.warning("no model targets configured: every incident will fail with no_target")
    notifier = _notifier(settings.webhooks, settings.redis, registry, dead_letters)
    if bus is None:
        bus = KafkaBus(settings.kafka, group_id=settings.group_id, max_poll_records=1,
                       consumer_options=consumer_options(
                           settings.models, lease_ttl_s=settings.lease_ttl_s,
                           session_timeout_s=settings.session_timeout_s))
    worker = Worker(store, attributor, WorkerMetrics(registry), bus, settings.topics,
                    settings.models, lease_ttl_s=settings.lease_ttl_s, notifier=notifier,
                    settle_s=settle_s, lease_poll_s=lease_poll_s)
    return Deployable(worker, registry, notifier, [worker.close])


def build_otlp_receiver(settings: IngestServiceSettings, *, publisher: Publisher | None = None,
                        registry: CollectorRegistry | None = None) -> Deployable[OtlpReceiver]:
    """The OTLP/HTTP receiver of ``settings``, bound to ``settings.receiver``'s host and port
    (not yet serving: ``start()``), producing through ``publisher`` (default: a
    :class:`KafkaPublisher` waiting up to ``receiver.produce_timeout_s`` for the acks)."""
    registry = registry if registry is not None else CollectorRegistry()
    if publisher is None:
        check_kafka_auth(settings.kafka)
        publisher = KafkaPublisher(settings.kafka,
                                   timeout_s=settings.receiver.produce_timeout_s)
    decoder = RecordDecoder(settings.ingest, max_event_bytes=settings.max_event_bytes,
                            metrics=IngestMetrics(registry),
                            join=ContentJoin(settings.ingest.content_join))  # /v1/logs content
    sink = KafkaSink(publisher, settings.topics.outputs, settings.topics.dead_letter)
    try:
        receiver = OtlpReceiver(settings.receiver, decoder, sink, ReceiverMetrics(registry))
    except OSError:
        publisher.close()
        raise
    return Deployable(receiver, registry, None, [publisher.close])


def build_alert_receiver(settings: AlertsSettings, *, dead_letters: DeadLetterSink | None = None,
                         registry: CollectorRegistry | None = None
                         ) -> Deployable[AlertReceiver]:
    """The Alertmanager-compatible receiver of ``settings``, bound (not yet serving:
    ``start()``), relaying accepted alerts to the configured webhooks through a background
    notifier (``settings.max_queue``) whose failures go to the dead-letter list."""
    if settings.receiver is None:
        raise ConfigError("the receiver needs credentials: set receiver.bearer_token or "
                          "receiver.signing_secrets (e.g. DRIFTSCOPE_RECEIVER__BEARER_TOKEN)",
                          field="receiver")
    registry = registry if registry is not None else CollectorRegistry()
    if dead_letters is None:
        dead_letters = open_dead_letters(settings.redis, key=settings.webhooks.dead_letter_key,
                                         max_len=settings.webhooks.dead_letter_max)
    relay = relay_notifier(settings.webhooks, dead_letters, registry,
                           max_queue=settings.max_queue)
    try:
        receiver = AlertReceiver(settings.receiver, relay.submit_alerts)
    except OSError:
        relay.close()
        raise
    return Deployable(receiver, registry, relay)
