"""Assemble the webhook notifier a deployable needs from its settings."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from driftscope_llm.services.alerts.deadletter import RedisDeadLetterSink
from driftscope_llm.services.alerts.notifier import BackgroundNotifier, Notifier, WebhookMetrics
from driftscope_llm.services.alerts.settings import WebhookSettings
from driftscope_llm.services.alerts.transport import UrllibTransport

__all__ = ["build_notifier"]


def build_notifier(settings: WebhookSettings, redis_client: Any,
                   registry: CollectorRegistry) -> BackgroundNotifier | None:
    """A background notifier over every configured endpoint; ``None`` when there are none.

    Dead letters go to the Redis list ``settings.dead_letter_key``; delivery metrics to
    ``registry``. Call ``close()`` on shutdown so queued deliveries finish.
    """
    if not settings.endpoints:
        return None
    return BackgroundNotifier(Notifier(
        settings, transport=UrllibTransport(),
        dead_letters=RedisDeadLetterSink(redis_client, key=settings.dead_letter_key,
                                         max_len=settings.dead_letter_max),
        metrics=WebhookMetrics(registry)))
