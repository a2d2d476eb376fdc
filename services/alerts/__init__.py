"""Webhooks out, Alertmanager webhooks in.

:class:`Notifier` delivers incident events (and relayed Prometheus alerts) to the endpoints of
:class:`WebhookSettings`, signed (``X-Driftscope-Signature``, :func:`verify` checks it), retried
with backoff and jitter, dead-lettered when the budget is spent. :class:`AlertReceiver` is the
Alertmanager-compatible receiver. The payload is documented in ``docs/webhooks.md``.
"""

from services.alerts.alertmanager import AlertmanagerMessage
from services.alerts.deadletter import (
    DeadLetter,
    DeadLetterSink,
    MemoryDeadLetterSink,
    RedisDeadLetterSink,
)
from services.alerts.delivery import DeliveryResult
from services.alerts.errors import SignatureError
from services.alerts.notifier import BackgroundNotifier, Notifier, WebhookMetrics
from services.alerts.receiver import AlertReceiver
from services.alerts.settings import (
    EventKind,
    ReceiverSettings,
    RetryPolicy,
    WebhookEndpoint,
    WebhookSettings,
)
from services.alerts.signing import sign, verify
from services.alerts.transport import UrllibTransport

__all__ = [
    "AlertReceiver",
    "AlertmanagerMessage",
    "BackgroundNotifier",
    "DeadLetter",
    "DeadLetterSink",
    "DeliveryResult",
    "EventKind",
    "MemoryDeadLetterSink",
    "Notifier",
    "ReceiverSettings",
    "RedisDeadLetterSink",
    "RetryPolicy",
    "SignatureError",
    "UrllibTransport",
    "WebhookEndpoint",
    "WebhookMetrics",
    "WebhookSettings",
    "sign",
    "verify",
]
