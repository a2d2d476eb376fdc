"""Assemble the webhook notifier a deployable needs from its settings."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from driftscope_llm.services.alerts.deadletter import DeadLetterSink
from driftscope_llm.services.alerts.notifier import BackgroundNotifier, Notifier, WebhookMetrics
from driftscope_llm.services.alerts.settings import WebhookSettings
from driftscope_llm.services.alerts.transport import UrllibTransport

__all__ = ["build_notifier", "relay_notifier"]


def build_notifier(settings: WebhookSettings, dead_letters: DeadLetterSink,
                   registry: CollectorRegistry, *, max_queue: int = 1000
                   ) -> BackgroundNotifier | None:
    """A background notifier over every configured endpoint; ``None`` when there are none.

    Undelivered webhooks go to ``dead_letters`` (in the services the store's Redis list
    ``settings.dead_letter_key``, :func:`~driftscope_llm.services.store.connect.open_dead_letters`);
    delivery metrics to ``registry``. Call ``close()`` on shutdown so queued deliveries finish.
    """
    if not settings.endpoints:
        return None
    return relay_notifier(settings, dead_letters, registry, max_queue=max_queue)


def relay_notifier(settings: WebhookSettings, dead_letters: DeadLetterSink,
                   registry: CollectorRegistry, *, max_queue: int = 1000) -> BackgroundNotifier:
    """A background notifier over the endpoints of ``settings``, even when there are none
    (the alert receiver relays to whatever is configured)."""
    return BackgroundNotifier(Notifier(settings, transport=UrllibTransport(),
                                       dead_letters=dead_letters,
                                       metrics=WebhookMetrics(registry)),
                              max_queue=max_queue)
