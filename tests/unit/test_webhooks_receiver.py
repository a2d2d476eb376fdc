"""The Alertmanager-compatible receiver, over real HTTP on 127.0.0.1: who gets in, what is
refused and how, and the relay of accepted alerts to driftscope's webhook endpoints."""

from __future__ import annotations

import http.client
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from driftscope_llm.services.alerts import (
    AlertmanagerMessage,
    AlertReceiver,
    AlertReceiverSettings,
    MemoryDeadLetterSink,
    Notifier,
    UrllibTransport,
    WebhookEndpoint,
    WebhookSettings,
    sign,
    verify,
)
from tests.unit._webhook_sink import WebhookSink

TOKEN = "am-bearer-token-0123456789"
KEY = "receiver-hmac-key-0123456789"
NOW = 1_700_000_000.0


def am_message(status: str = "firing", n: int = 1) -> dict[str, Any]:
    alerts = [
        {
            "status": status,
            "labels": {"alertname": "DriftscopeDriftAlarm", "model": "chat", "signal": "length",
                       "severity": "warning"},
            "annotations": {"summary": f"drift on chat/length #{i}"},
            "startsAt": "2024-05-01T12:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": f"{i:016x}",
        }
        for i in range(n)
    ]
    return {
        "version": "4", "groupKey": '{}:{alertname="DriftscopeDriftAlarm"}', "truncatedAlerts": 0,
        "status": status, "receiver": "driftscope", "groupLabels": {"alertname":
                                                                    "DriftscopeDriftAlarm"},
        "commonLabels": {"alertname": "DriftscopeDriftAlarm"}, "commonAnnotations": {},
        "externalURL": "http://alertmanager", "alerts": alerts,
    }  # fmt: skip


class Got:
    def __init__(self) -> None:
        self.messages: list[AlertmanagerMessage] = []
        self.fail = False

    def __call__(self, m: AlertmanagerMessage) -> None:
        if self.fail:
            raise RuntimeError("downstream unavailable")
        self.messages.append(m)


@pytest.fixture
def got() -> Got:
    return Got()


@pytest.fixture
def receiver(got: Got) -> Iterator[AlertReceiver]:
    settings = AlertReceiverSettings(port=0, bearer_token=SecretStr(TOKEN),
                                signing_secrets=[SecretStr(KEY)], max_body_bytes=4096)
    with AlertReceiver(settings, got, clock=lambda: NOW) as rx:
        yield rx


def post(rx: AlertReceiver, body: bytes, headers: dict[str, str] | None = None,
         path: str = "/alertmanager", length: bool = True) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=5)
    try:
        conn.putrequest("POST", path)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if length:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body if length else None)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def test_bearer_token_is_accepted_and_the_message_parsed(receiver: AlertReceiver,
                                                         got: Got) -> None:
    assert post(receiver, json.dumps(am_message(n=2)).encode(), bearer()) == 200
    [m] = got.messages
    assert m.status == "firing" and len(m.alerts) == 2
    assert m.alerts[1].labels["signal"] == "length" and m.alerts[1].fingerprint.endswith("1")


@pytest.mark.parametrize("headers", [{}, bearer("wrong-token"), {"Authorization": TOKEN},
                                     {"Authorization": "Basic " + TOKEN}])
def test_missing_or_wrong_credentials_get_401(receiver: AlertReceiver, got: Got,
                                              headers: dict[str, str]) -> None:
    assert post(receiver, json.dumps(am_message()).encode(), headers) == 401
    assert got.messages == []


def test_signed_request_is_accepted_once_then_refused_as_replay(receiver: AlertReceiver,
                                                                got: Got) -> None:
    body = json.dumps(am_message()).encode()
    headers = {"X-Driftscope-Signature": sign(body, SecretStr(KEY), int(NOW))}
    assert post(receiver, body, headers) == 200
    assert post(receiver, body, headers) == 409
    assert len(got.messages) == 1


@pytest.mark.parametrize("case", ["stale", "tampered", "wrong-key"])
def test_bad_signatures_get_401(receiver: AlertReceiver, got: Got, case: str) -> None:
    body = json.dumps(am_message()).encode()
    key, t, sent = SecretStr(KEY), int(NOW), body
    if case == "stale":
        t -= 301
    elif case == "tampered":
        sent = body.replace(b"firing", b"resolv")
    else:
        key = SecretStr("another-key-0123456789")
    assert post(receiver, sent, {"X-Driftscope-Signature": sign(body, key, t)}) == 401
    assert got.messages == []


def test_refusals_for_size_length_path_and_content(receiver: AlertReceiver, got: Got) -> None:
    big = json.dumps(am_message(n=50)).encode()
    assert len(big) > 4096
    assert post(receiver, big, bearer()) == 413
    assert post(receiver, b"{}", bearer(), length=False) == 411
    assert post(receiver, json.dumps(am_message()).encode(), bearer(), path="/other") == 404
    assert post(receiver, b"not json", bearer()) == 400
    assert post(receiver, json.dumps({"version": "3", "alerts": []}).encode(), bearer()) == 400
    assert got.messages == []
    assert receiver.refused == 5 and receiver.accepted == 0


def test_a_failing_handler_answers_500_so_alertmanager_retries(receiver: AlertReceiver,
                                                               got: Got) -> None:
    got.fail = True
    assert post(receiver, json.dumps(am_message()).encode(), bearer()) == 500
    got.fail = False
    assert post(receiver, json.dumps(am_message()).encode(), bearer()) == 200


def test_health_endpoint(receiver: AlertReceiver) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
    conn.request("GET", "/-/healthy")
    assert conn.getresponse().status == 200
    conn.close()


def test_settings_refuse_a_receiver_without_credentials() -> None:
    with pytest.raises(ValidationError, match="bearer_token or signing_secrets"):
        AlertReceiverSettings()
    assert AlertReceiverSettings(allow_unauthenticated=True).host == "127.0.0.1"
    assert TOKEN not in repr(AlertReceiverSettings(bearer_token=SecretStr(TOKEN)))


def test_relay_forwards_alerts_as_signed_driftscope_alert_v1() -> None:
    secret = "relay-secret-0123456789abcdef"
    with WebhookSink([200]) as sink:
        notifier = Notifier(
            WebhookSettings(endpoints=[WebhookEndpoint(
                name="ops", url=SecretStr(sink.url), secret=SecretStr(secret))]),
            transport=UrllibTransport(), dead_letters=MemoryDeadLetterSink(),
            clock=lambda: NOW, sleep=lambda s: None, rng=random.Random(0),
        )  # fmt: skip
        settings = AlertReceiverSettings(port=0, bearer_token=SecretStr(TOKEN))
        with AlertReceiver(settings, notifier.notify_alerts, clock=lambda: NOW) as rx:
            assert post(rx, json.dumps(am_message("resolved", n=2)).encode(), bearer()) == 200
    [req] = sink.received
    verify(req.body, req.headers["X-Driftscope-Signature"], SecretStr(secret), now=NOW)
    payload = json.loads(req.body)
    assert payload["schema"] == "driftscope.alert.v1" and payload["event"] == "alert.resolved"
    assert payload["group"]["labels"] == {"alertname": "DriftscopeDriftAlarm"}
    assert [a["fingerprint"] for a in payload["alerts"]] == [f"{i:016x}" for i in range(2)]
    assert payload["alerts"][0]["starts_at"] == "2024-05-01T12:00:00Z"
