"""Delivering one body to one endpoint: sign, POST, retry with backoff and jitter, give up.

Pure control flow over side effects passed in (transport, clock, sleep, rng), so a test drives it
against a real server with a fake clock and no real waiting, or with real time and small delays.

What is retried: no answer (refused, reset, timeout), ``408``, ``425``, ``429`` and every ``5xx``.
What is not: ``2xx`` is success; any other status (``3xx``, other ``4xx``) is a receiver saying no
— retrying the same signed body cannot change that — and goes to the dead letters at once with
reason ``rejected``. When ``max_attempts`` is spent the reason is ``exhausted``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from driftscope_llm.services.alerts.deadletter import UndeliveredWebhook
from driftscope_llm.services.alerts.settings import RetryPolicy, WebhookEndpoint
from driftscope_llm.services.alerts.signing import SIGNATURE_HEADER, sign
from driftscope_llm.services.alerts.transport import HttpResponse, HttpTransport, TransportError

__all__ = ["DeliveryResult", "backoff_delay", "deliver", "is_retryable"]

RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class DeliveryResult:
    """How one endpoint's delivery ended. ``dead_letter`` is set when it did not get through."""

    endpoint: str
    delivery_id: str
    delivered: bool
    attempts: int
    status: int | None
    error: str | None
    dead_letter: UndeliveredWebhook | None = None


def is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUS or 500 <= status <= 599


def backoff_delay(policy: RetryPolicy, attempts_made: int, rng: random.Random,
                  retry_after_s: float | None = None) -> float:
    """Seconds to wait before the next attempt: full jitter under :meth:`RetryPolicy.cap`,
    raised to ``retry_after_s`` when the receiver asked (never beyond ``max_delay_s``)."""
    delay = rng.uniform(0.0, policy.cap(attempts_made))
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, policy.max_delay_s))
    return delay


@dataclass(frozen=True)
class Attempt:
    response: HttpResponse | None
    error: str | None


def _attempt(transport: HttpTransport, endpoint: WebhookEndpoint, body: bytes,
             headers: dict[str, str], now: float) -> Attempt:
    if endpoint.secret is not None:
        headers = {**headers, SIGNATURE_HEADER: sign(body, endpoint.secret, int(now))}
    try:
        return Attempt(transport.post(endpoint.url.get_secret_value(), body, headers,
                                      endpoint.timeout_s), None)
    except TransportError as exc:
        return Attempt(None, exc.kind)


def deliver(
    endpoint: WebhookEndpoint,
    body: bytes,
    headers: dict[str, str],
    *,
    event: str,
    delivery_id: str,
    subject: str,
    transport: HttpTransport,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    rng: random.Random,
) -> DeliveryResult:
    """POST ``body`` to ``endpoint`` until it is accepted or the retry budget is spent.

    Each attempt is signed with the clock's time at that attempt (so a slow retry is never stale
    on arrival) and carries ``X-Driftscope-Attempt``. Returns the result; a failed delivery's
    result carries the :class:`UndeliveredWebhook` record for the caller to persist.
    """
    policy = endpoint.retry
    first = clock()
    status: int | None = None
    error: str | None = None
    attempts = 0
    reason = "exhausted"
    while attempts < policy.max_attempts:
        attempts += 1
        got = _attempt(transport, endpoint, body,
                       {**headers, "X-Driftscope-Attempt": str(attempts)}, clock())
        status = got.response.status if got.response is not None else None
        error = got.error
        if status is not None and 200 <= status <= 299:
            return DeliveryResult(endpoint.name, delivery_id, True, attempts, status, None)
        if status is not None and not is_retryable(status):
            reason = "rejected"
            break
        if attempts < policy.max_attempts:
            retry_after = got.response.retry_after_s if got.response is not None else None
            sleep(backoff_delay(policy, attempts, rng, retry_after))
    record = UndeliveredWebhook(
        endpoint=endpoint.name, event=event, delivery_id=delivery_id, subject=subject,
        reason=reason, attempts=attempts, last_status=status, last_error=error,
        first_attempt_at=datetime.fromtimestamp(first, UTC),
        failed_at=datetime.fromtimestamp(clock(), UTC),
        content_type=headers.get("Content-Type", "application/json"),
        body=body.decode("utf-8", errors="replace"),
    )  # fmt: skip
    return DeliveryResult(endpoint.name, delivery_id, False, attempts, status, error, record)
