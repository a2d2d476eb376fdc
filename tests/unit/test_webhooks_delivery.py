"""Webhook delivery against a real HTTP server on 127.0.0.1: retries, backoff, dead letters,
formats, secrets kept out of logs and records."""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from driftscope_llm.services.alerts import (
    BackgroundNotifier,
    EventKind,
    MemoryDeadLetterSink,
    Notifier,
    RetryPolicy,
    UrllibTransport,
    WebhookEndpoint,
    WebhookMetrics,
    WebhookSettings,
    verify,
)
from driftscope_llm.services.alerts.delivery import backoff_delay
from driftscope_llm.services.store.model import Exemplar, Incident
from tests.attribution_reports import attributed_report
from tests.unit._webhook_sink import WebhookSink

SECRET = "whsec-delivery-0123456789abcdef"
T0 = 1_700_000_000.0


def incident(**kw: object) -> Incident:
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    fields: dict[str, object] = dict(
        id="inc-0123456789abcdef", opened_at=at, updated_at=at, model="chat",
        model_version="v7", segment="billing", signal="confidence", detector="ks",
        statistic=0.41, threshold=0.2, effect_size=-1.3, event_id="e-991",
        exemplars=[Exemplar(event_id="e-990", prompt="user prompt text",
                            output="model output text")],
    )  # fmt: skip
    fields.update(kw)
    return Incident.model_validate(fields)


def endpoint(url: str, **kw: object) -> WebhookEndpoint:
    fields: dict[str, object] = {
        "name": "ops", "url": url, "secret": SECRET, "timeout_s": 2.0,
        "retry": {"max_attempts": 4, "base_delay_s": 0.5, "max_delay_s": 4.0},
    }
    fields.update(kw)
    return WebhookEndpoint.model_validate(fields)


class FakeTime:
    """A clock that only moves when ``sleep`` is called: retries cost no real time."""

    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def notifier(endpoints: list[WebhookEndpoint], fake: FakeTime,
             sink: MemoryDeadLetterSink | None = None,
             registry: CollectorRegistry | None = None) -> Notifier:
    return Notifier(
        WebhookSettings(endpoints=endpoints), transport=UrllibTransport(),
        dead_letters=sink if sink is not None else MemoryDeadLetterSink(),
        clock=fake.clock, sleep=fake.sleep, rng=random.Random(7),
        metrics=WebhookMetrics(registry) if registry is not None else None,
    )  # fmt: skip


def test_retries_a_failing_receiver_until_it_accepts() -> None:
    fake = FakeTime()
    dead = MemoryDeadLetterSink()
    with WebhookSink([503, 500, 200]) as rx:
        [result] = notifier([endpoint(rx.url)], fake, dead).notify("incident.opened", incident())
    assert result.delivered and result.attempts == 3 and result.status == 200
    assert dead.records == []
    assert len(rx.received) == 3
    bodies = {r.body for r in rx.received}
    assert len(bodies) == 1  # the same body every attempt; only the signature is fresh
    assert [r.headers["X-Driftscope-Attempt"] for r in rx.received] == ["1", "2", "3"]
    assert {r.headers["X-Driftscope-Delivery"] for r in rx.received} == {result.delivery_id}
    # each attempt's signature verifies at the (fake) time it was sent
    signed_at = [T0, T0 + fake.sleeps[0], T0 + fake.sleeps[0] + fake.sleeps[1]]
    for r, now in zip(rx.received, signed_at, strict=True):
        assert verify(r.body, r.headers["X-Driftscope-Signature"], SecretStr(SECRET),
                      now=now, tolerance_s=1) == int(now)
    # backoff: full jitter under a cap that doubles from base_delay_s
    assert len(fake.sleeps) == 2
    assert 0 <= fake.sleeps[0] <= 0.5 and 0 <= fake.sleeps[1] <= 1.0


def test_generic_payload_is_the_documented_v1_object() -> None:
    fake = FakeTime()
    with WebhookSink([200]) as rx:
        notifier([endpoint(rx.url)], fake).notify(EventKind.INCIDENT_OPENED, incident())
    [req] = rx.received
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["X-Driftscope-Event"] == "incident.opened"
    payload = json.loads(req.body)
    assert set(payload) == {"schema", "event", "delivery_id", "sent_at", "incident"}
    assert payload["schema"] == "driftscope.incident.v1"
    assert payload["event"] == "incident.opened"
    assert payload["sent_at"] == "2023-11-14T22:13:20Z"
    inc = payload["incident"]
    assert inc["id"] == "inc-0123456789abcdef" and inc["model_version"] == "v7"
    assert inc["statistic"] == 0.41 and inc["state"] == "open"
    assert inc["exemplars"] == [{"event_id": "e-990"}]  # no production text by default
    assert "model output text" not in req.body.decode()


def test_include_text_sends_exemplar_text() -> None:
    with WebhookSink([200]) as rx:
        notifier([endpoint(rx.url, include_text=True)], FakeTime()).notify(
            "incident.updated", incident())
    exemplar = json.loads(rx.received[0].body)["incident"]["exemplars"][0]
    assert exemplar["output"] == "model output text"


def test_delivery_id_is_stable_for_one_notification_and_differs_across_events() -> None:
    fake = FakeTime()
    with WebhookSink([200]) as rx:
        n = notifier([endpoint(rx.url)], fake)
        a = n.notify("incident.opened", incident())[0].delivery_id
        b = n.notify("incident.opened", incident())[0].delivery_id
        c = n.notify("incident.updated", incident(updates=1))[0].delivery_id
    assert a == b != c


def test_dead_letter_record_once_the_retry_budget_is_spent() -> None:
    fake = FakeTime()
    dead = MemoryDeadLetterSink()
    registry = CollectorRegistry()
    with WebhookSink([500]) as rx:
        n = notifier([endpoint(rx.url)], fake, dead, registry)
        # the series exist at 0 before anything happened, so the first failure is an increase
        assert registry.get_sample_value("driftscope_webhook_deliveries_total",
                                         {"endpoint": "ops", "outcome": "dead_lettered"}) == 0
        [result] = n.notify("incident.opened", incident())
    assert not result.delivered and result.attempts == 4 and result.status == 500
    assert len(rx.received) == 4
    [record] = dead.records
    assert record.reason == "exhausted" and record.attempts == 4 and record.last_status == 500
    assert record.endpoint == "ops" and record.subject == "inc-0123456789abcdef"
    assert record.delivery_id == result.delivery_id and record.event == "incident.opened"
    assert record.body.encode() == rx.received[0].body  # replayable as sent
    assert record.first_attempt_at == datetime.fromtimestamp(T0, UTC)
    assert record.failed_at == datetime.fromtimestamp(T0 + sum(fake.sleeps), UTC)
    assert len(fake.sleeps) == 3  # no wait after the last attempt
    value = registry.get_sample_value
    assert value("driftscope_webhook_attempts_total", {"endpoint": "ops"}) == 4
    assert value("driftscope_webhook_deliveries_total",
                 {"endpoint": "ops", "outcome": "dead_lettered"}) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 410, 302])
def test_a_receiver_that_says_no_is_not_retried(status: int) -> None:
    dead = MemoryDeadLetterSink()
    with WebhookSink([status, 200]) as rx:
        [result] = notifier([endpoint(rx.url)], FakeTime(), dead).notify(
            "incident.opened", incident())
    assert not result.delivered and result.attempts == 1 and len(rx.received) == 1
    assert dead.records[0].reason == "rejected" and dead.records[0].last_status == status


def test_no_answer_is_retried_then_dead_lettered_with_the_error_kind() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = MemoryDeadLetterSink()
    [result] = notifier([endpoint(f"http://127.0.0.1:{port}/hook")], FakeTime(), dead).notify(
        "incident.opened", incident())
    assert not result.delivered and result.attempts == 4 and result.status is None
    assert dead.records[0].last_error == "ConnectionRefusedError"


def test_per_endpoint_timeout_counts_as_a_failed_attempt() -> None:
    fake = FakeTime()
    with WebhookSink([("sleep", 1.0, 200), 200]) as rx:
        started = time.monotonic()
        [result] = notifier([endpoint(rx.url, timeout_s=0.2)], fake).notify(
            "incident.opened", incident())
        elapsed = time.monotonic() - started
    assert result.delivered and result.attempts == 2
    assert elapsed < 0.9  # the first attempt was abandoned at its 0.2 s timeout


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    fake = FakeTime()
    with WebhookSink([(429, {"Retry-After": "3"}), (503, {"Retry-After": "60"}), 200]) as rx:
        [result] = notifier([endpoint(rx.url)], fake).notify("incident.opened", incident())
    assert result.delivered and len(rx.received) == 3
    assert fake.sleeps[0] >= 3.0
    assert fake.sleeps[1] == 4.0  # asked 60 s, capped at max_delay_s


def test_backoff_full_jitter_bounds_and_spread() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.5, max_delay_s=8.0)
    rng = random.Random(1)
    for n, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0), (500, 8.0)]:
        draws = [backoff_delay(policy, n, rng) for _ in range(400)]
        assert min(draws) >= 0.0 and max(draws) <= cap
        assert max(draws) > 0.8 * cap and min(draws) < 0.2 * cap  # spread over the whole range


def test_each_endpoint_gets_its_format_and_only_the_events_it_asked_for() -> None:
    fake = FakeTime()
    with WebhookSink([200]) as generic, WebhookSink([200]) as slack:
        n = notifier([
            endpoint(generic.url, events=["incident.opened"]),
            endpoint(slack.url, name="slack", format="slack", secret=None),
        ], fake)  # fmt: skip
        n.notify("incident.opened", incident())
        n.notify("incident.attributed", incident(
            state="attributed",
            attribution=attributed_report(["ft-17", "ft-3"])))
    assert [json.loads(r.body)["event"] for r in generic.received] == ["incident.opened"]
    assert len(slack.received) == 2
    assert "X-Driftscope-Signature" not in slack.received[0].headers
    msg = json.loads(slack.received[1].body)
    assert set(msg) == {"text", "blocks"}
    assert msg["text"].startswith("Drift incident attributed: chat@v7 [billing]")
    assert "ft-17" in json.dumps(msg["blocks"])


def test_slack_text_is_escaped() -> None:
    with WebhookSink([200]) as rx:
        notifier([endpoint(rx.url, format="slack")], FakeTime()).notify(
            "incident.opened", incident(segment="<!channel> & co"))
    blocks = json.dumps(json.loads(rx.received[0].body)["blocks"])
    assert "<!channel>" not in blocks and "&lt;!channel&gt; &amp; co" in blocks


def test_secrets_never_reach_logs_records_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    token_url_path = "/services/T000/B000/XXXXsecretpathtoken"
    dead = MemoryDeadLetterSink()
    caplog.set_level(logging.DEBUG)
    with WebhookSink([500]) as rx:
        url = rx.url.replace("/hook", token_url_path)
        ep = endpoint(url, name="slack-ops", format="slack", secret=SECRET)
        settings = WebhookSettings(endpoints=[ep])
        notifier([ep], FakeTime(), dead).notify("incident.opened", incident())
    assert dead.records and caplog.text
    dumped = dead.records[0].model_dump_json()
    for secret in (SECRET, "XXXXsecretpathtoken"):
        assert secret not in caplog.text
        assert secret not in dumped
        assert secret not in repr(settings) and secret not in str(settings.model_dump())
    assert "slack-ops" in caplog.text  # the endpoint is named, by its name


def test_settings_refuse_unsigned_generic_endpoints_and_duplicate_names() -> None:
    with pytest.raises(ValidationError, match="needs a secret"):
        WebhookEndpoint(name="x", url=SecretStr("http://127.0.0.1/x"))
    with pytest.raises(ValidationError, match="at least 16"):
        WebhookEndpoint(name="x", url=SecretStr("http://127.0.0.1/x"), secret=SecretStr("short"))
    with pytest.raises(ValidationError, match="http"):
        WebhookEndpoint(name="x", url=SecretStr("file:///etc/passwd"), format="slack")
    ep = endpoint("http://127.0.0.1/x")
    with pytest.raises(ValidationError, match="unique"):
        WebhookSettings(endpoints=[ep, ep])
    from_env_json = WebhookSettings.model_validate_json(json.dumps({"endpoints": [
        {"name": "a", "url": "https://hooks.example.invalid/a", "secret": SECRET}]}))
    assert from_env_json.endpoints[0].retry.max_attempts == 5


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_background_notifier_does_not_block_and_drains_on_close() -> None:
    gate = threading.Event()
    with WebhookSink([200]) as rx:
        inner = notifier([endpoint(rx.url)], FakeTime())
        real_send = inner.send
        inner.send = lambda n: (gate.wait(10), real_send(n))[1]  # type: ignore[method-assign]
        bg = BackgroundNotifier(inner, max_queue=10)
        started = time.monotonic()
        for i in range(3):
            bg.submit("incident.updated", incident(updates=i))
        assert time.monotonic() - started < 0.5 and rx.received == []
        gate.set()
        assert bg.close(timeout_s=10)
    assert sorted(json.loads(r.body)["incident"]["updates"] for r in rx.received) == [0, 1, 2]


def test_background_notifier_dead_letters_what_does_not_fit_the_queue() -> None:
    gate = threading.Event()
    dead = MemoryDeadLetterSink()
    with WebhookSink([200]) as rx:
        inner = notifier([endpoint(rx.url)], FakeTime(), dead)
        real_send = inner.send
        inner.send = lambda n: (gate.wait(10), real_send(n))[1]  # type: ignore[method-assign]
        bg = BackgroundNotifier(inner, max_queue=1)
        bg.submit("incident.updated", incident(updates=0))  # taken by the thread, blocks
        _wait(lambda: bg._queue.qsize() == 0)
        bg.submit("incident.updated", incident(updates=1))  # fills the queue
        bg.submit("incident.updated", incident(updates=2))  # overflows
        gate.set()
        assert bg.close(timeout_s=10)
    assert [r.reason for r in dead.records] == ["queue_full"]
    assert json.loads(dead.records[0].body)["incident"]["updates"] == 2
    assert len(rx.received) == 2
