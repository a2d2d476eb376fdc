"""Webhooks out, Alertmanager webhooks in.

:class:`Notifier` delivers incident events (and relayed Prometheus alerts) to the endpoints of
:class:`WebhookSettings`, signed (``X-Driftscope-Signature``, :func:`verify` checks it), retried
with backoff and jitter, dead-lettered when the budget is spent. :class:`AlertReceiver` is the
Alertmanager-compatible receiver. The payload is documented in ``docs/webhooks.md``.
"""

from driftscope_llm.services.alerts.alertmanager import AlertmanagerMessage
from driftscope_llm.services.alerts.deadletter import (
    DeadLetterSink,
    MemoryDeadLetterSink,
    RedisDeadLetterSink,
    UndeliveredWebhook,
)
from driftscope_llm.services.alerts.delivery import DeliveryResult
from driftscope_llm.services.alerts.errors import SignatureError
from driftscope_llm.services.alerts.notifier import BackgroundNotifier, Notifier, WebhookMetrics
from driftscope_llm.services.alerts.receiver import AlertReceiver
from driftscope_llm.services.alerts.settings import (
    AlertReceiverSettings,
    EventKind,
    RetryPolicy,
    WebhookEndpoint,
    WebhookSettings,
)
from driftscope_llm.services.alerts.signing import sign, verify
from driftscope_llm.services.alerts.transport import UrllibTransport

__all__ = [
    "AlertReceiver",
    "AlertReceiverSettings",
    "AlertmanagerMessage",
    "BackgroundNotifier",
    "DeadLetterSink",
    "DeliveryResult",
    "EventKind",
    "MemoryDeadLetterSink",
    "Notifier",
    "RedisDeadLetterSink",
    "RetryPolicy",
    "SignatureError",
    "UndeliveredWebhook",
    "UrllibTransport",
    "WebhookEndpoint",
    "WebhookMetrics",
    "WebhookSettings",
    "sign",
    "verify",
]
