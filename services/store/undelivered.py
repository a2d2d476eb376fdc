"""Webhook deliveries that did not get through, kept in Redis for a person to inspect or replay.

A :class:`UndeliveredWebhook` holds everything needed to understand and replay the failure —
endpoint *name* (never its URL), event, delivery id, the exact body, attempts, the last HTTP
status or transport error, first and last attempt times — and nothing secret: the signature is
not stored (a replay signs afresh, with a fresh timestamp).

:class:`RedisDeadLetterSink` keeps them in one Redis list (``LPUSH`` + ``LTRIM`` in one
MULTI/EXEC transaction, newest first, trimmed to the newest ``max_len``), named by the setting
``webhooks.dead_letter_key`` (default ``driftscope:webhooks:dead``; ``LRANGE key 0 9`` shows the
last ten). It lives in the store because the store is the one place that touches Redis; the
webhook notifier (:mod:`driftscope_llm.services.alerts.deadletter`) writes through it.
"""

from __future__ import annotations

from datetime import datetime

import redis
from pydantic import BaseModel, ValidationError

from driftscope_llm.services.errors import StoreError

__all__ = ["RedisDeadLetterSink", "UndeliveredWebhook"]


class UndeliveredWebhook(BaseModel):
    """One delivery that did not get through."""

    endpoint: str
    event: str
    delivery_id: str
    subject: str
    reason: str  # "exhausted" (retry budget spent) | "rejected" (a 4xx that retrying won't fix)
    attempts: int
    last_status: int | None
    last_error: str | None
    first_attempt_at: datetime
    failed_at: datetime
    content_type: str
    body: str


class RedisDeadLetterSink:
    """``LPUSH`` + ``LTRIM`` on one Redis list, in one MULTI/EXEC transaction."""

    def __init__(self, client: redis.Redis[bytes], key: str = "driftscope:webhooks:dead",
                 max_len: int = 10_000) -> None:
        self.client = client
        self.key = key
        self.max_len = max_len

    def write(self, record: UndeliveredWebhook) -> None:
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.lpush(self.key, record.model_dump_json())
            pipe.ltrim(self.key, 0, self.max_len - 1)
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            raise StoreError(f"cannot write dead-letter record: {type(exc).__name__}",
                             key=self.key) from None

    def read(self, count: int = 100) -> list[UndeliveredWebhook]:
        """The newest ``count`` readable records, newest first (see :meth:`read_all`)."""
        return self.read_all(count)[0]

    def read_all(self, count: int = 100) -> tuple[list[UndeliveredWebhook], list[bytes]]:
        """The newest ``count`` entries, newest first: the readable records, and the raw bytes of
        any entry that is not a dead-letter record (written by hand or by another version), so
        one bad entry never hides the others."""
        try:
            raw = self.client.lrange(self.key, 0, count - 1)
        except redis.exceptions.RedisError as exc:
            raise StoreError(f"cannot read dead-letter records from Redis: "
                             f"{type(exc).__name__}: {exc}", key=self.key) from None
        records: list[UndeliveredWebhook] = []
        unreadable: list[bytes] = []
        for entry in raw:
            try:
                records.append(UndeliveredWebhook.model_validate_json(entry))
            except ValidationError:
                unreadable.append(entry)
        return records, unreadable
