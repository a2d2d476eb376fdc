"""The Redis dead-letter sink against the real Redis of the stack."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import redis
from pydantic import SecretStr

from driftscope_llm.services.alerts import (
    Notifier,
    RedisDeadLetterSink,
    UndeliveredWebhook,
    UrllibTransport,
    WebhookEndpoint,
    WebhookSettings,
)
from driftscope_llm.services.store.model import Incident
from tests.unit._webhook_sink import WebhookSink


def _record(i: int) -> UndeliveredWebhook:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    return UndeliveredWebhook(endpoint="ops", event="incident.opened", delivery_id=f"dlv-{i}",
                      subject=f"inc-{i}", reason="exhausted", attempts=3, last_status=503,
                      last_error=None, first_attempt_at=at, failed_at=at,
                      content_type="application/json", body="{}")


def test_records_are_listed_newest_first_and_trimmed(redis_client: redis.Redis) -> None:
    sink = RedisDeadLetterSink(redis_client, key="driftscope:webhooks:dead", max_len=3)
    for i in range(5):
        sink.write(_record(i))
    assert redis_client.llen("driftscope:webhooks:dead") == 3
    assert [r.delivery_id for r in sink.read(10)] == ["dlv-4", "dlv-3", "dlv-2"]


def test_notifier_dead_letters_into_redis(redis_client: redis.Redis) -> None:
    secret = "redis-test-secret-0123456789"
    at = datetime(2024, 5, 1, 12, tzinfo=UTC)
    incident = Incident(id="inc-redis", opened_at=at, updated_at=at, model="m",
                        model_version="v1", segment="all", signal="length", detector="ks",
                        statistic=0.5, threshold=0.1, effect_size=2.0, event_id="e1")
    with WebhookSink([503]) as rx:
        notifier = Notifier(
            WebhookSettings(endpoints=[WebhookEndpoint(
                name="ops", url=SecretStr(rx.url), secret=SecretStr(secret),
                retry={"max_attempts": 2, "base_delay_s": 0.0})]),  # type: ignore[arg-type]
            transport=UrllibTransport(), dead_letters=RedisDeadLetterSink(redis_client),
            rng=random.Random(0),
        )  # fmt: skip
        [result] = notifier.notify("incident.opened", incident)
    assert not result.delivered and len(rx.received) == 2
    [raw] = redis_client.lrange("driftscope:webhooks:dead", 0, -1)
    stored = json.loads(raw)
    assert stored["reason"] == "exhausted" and stored["last_status"] == 503
    assert json.loads(stored["body"])["incident"]["id"] == "inc-redis"
    assert secret not in raw.decode() and rx.url not in raw.decode()
