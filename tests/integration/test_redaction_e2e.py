"""Planted secrets and PII in production traffic never reach anything driftscope stores or sends.

A real collector consumes a drifting stream whose prompts and outputs carry e-mail addresses,
phone numbers, Luhn-valid card numbers and API keys; afterwards every Redis value (of every
type, the webhook dead-letter list included: a second endpoint that refuses connections makes every
delivery a dead letter), every message on the anomalies topic, every webhook body and the HTML
incident report are scanned.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from tests.collector_harness import CollectorProcess, checkpoint_totals, consume_all, produce
from tests.unit._webhook_sink import WebhookSink

SECRETS = [
    "jane.doe@example.com",
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "+1 (415) 555-0132",
    "sk-live-9fQ2xT7bLmN4pR8sV1wY3zA6cE0gH5jK",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
]


def _with_secrets(ev: dict[str, object], i: int) -> dict[str, object]:
    secret = SECRETS[i % len(SECRETS)]
    ev["prompt"] = f"{ev['prompt']} — my details: {secret}"
    ev["output"] = f"{ev['output']} (we have {SECRETS[(i + 3) % len(SECRETS)]} on file)"
    return ev


def _redis_values(client: redis.Redis) -> dict[bytes, list[bytes]]:
    """Every key's value(s), whatever the type, so nothing stored escapes the scan."""
    readers = {
        b"string": lambda k: [client.get(k) or b""],
        b"list": lambda k: client.lrange(k, 0, -1),
        b"hash": lambda k: [b for kv in client.hgetall(k).items() for b in kv],
        b"set": lambda k: list(client.smembers(k)),
        b"zset": lambda k: client.zrange(k, 0, -1),
        b"stream": lambda k: [b for _, fields in client.xrange(k) for kv in fields.items()
                              for b in kv],
    }
    values: dict[bytes, list[bytes]] = {}
    for key in client.scan_iter("*"):
        kind = client.type(key)
        assert kind in readers, f"the scan cannot read {kind!r} key {key!r}"
        values[key] = [key, *readers[kind](key)]
    return values


def test_no_planted_secret_is_stored_or_sent(
    kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = new_topic(partitions=1)
    events = [_with_secrets(e, i) for i, e in enumerate(generate_events(StreamSpec(
        n=3600, seed=21, drifts=(Drift(start=2000, route="billing", refusal_rate=0.4),))))]
    n = produce(kafka_bootstrap, topic, events)
    stream = tmp_path / "stream.jsonl"
    stream.write_text("".join(json.dumps(e) + "\n" for e in events))
    with WebhookSink() as sink:
        monkeypatch.setenv("DRIFTSCOPE_WEBHOOKS__ENDPOINTS", json.dumps(
            [{"name": "oncall", "url": sink.url, "secret": "k" * 32, "include_text": True},
             # nothing listens on port 9 of loopback: every delivery ends as a dead letter
             {"name": "down", "url": "http://127.0.0.1:9/hook", "secret": "d" * 32,
              "include_text": True, "timeout_s": 1, "retry": {"max_attempts": 1}}]))
        c = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, group_id="g-pii")
        c.start(max_idle=8)
        assert c.wait_exit() == 0, c.log_text()
        time.sleep(1.0)  # the background notifier's last deliveries
        bodies = [r.body.decode() for r in sink.received]
    assert checkpoint_totals(redis_client, topic) == n

    incident_keys = list(redis_client.scan_iter("driftscope:incident:*"))
    assert incident_keys, "the planted drift raised nothing: the scan would prove nothing"
    assert bodies, "no webhook was sent: the scan would prove nothing"
    values = _redis_values(redis_client)
    dead = [k for k in values if redis_client.type(k) == b"list" and b"dead" in k]
    assert dead and all(len(values[k]) > 1 for k in dead), \
        f"no webhook dead letters were written: that part of the scan would prove nothing {dead}"
    assert any(b"REDACTED" in v for k in dead for v in values[k][1:]), \
        "the dead letters carry no exemplar text: the scan of them would prove nothing"
    stored = [v for vs in values.values() for v in vs]
    anomalies = [m.value for m in consume_all(kafka_bootstrap, f"{topic}.anomalies")]
    incident_id = json.loads(redis_client.get(incident_keys[0]) or b"{}")["id"]
    html = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["incidents", "report", incident_id, "--html", str(html),
                                   "--events", str(stream)],
                             env={"DRIFTSCOPE_REDIS__URL": redis_url})
    assert res.exit_code == 0, res.output

    artefacts = {
        "redis": b"\n".join(stored).decode(errors="replace"),
        "anomalies topic": b"\n".join(anomalies).decode(errors="replace"),
        "webhooks": "\n".join(bodies),
        "html report": html.read_text(),
    }
    assert "REDACTED" in artefacts["redis"] and "REDACTED" in artefacts["webhooks"]
    for where, text in artefacts.items():
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, f"{where} holds planted secrets: {leaked}"
