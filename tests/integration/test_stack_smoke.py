"""Smoke tests of the real stack: each service does its basic job, and the stack script keeps
its promises (idempotent `up`, loud failures, `down` stops what `up` started and nothing else)."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.stack import Prometheus, StackInfo, http_json, run_stack

pytestmark = pytest.mark.integration

POLL_TIMEOUT_S = 30.0


def _consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


def _poll_values(consumer: KafkaConsumer, want: int, timeout: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(r.value for r in records)
    return got


def test_kafka_group_resumes_after_committed_offset(kafka_bootstrap: str, new_topic: Any) -> None:
    topic = new_topic(partitions=3, prefix="smoke")
    group = f"smoke-{uuid.uuid4().hex[:8]}"
    first = [f"first-{i}".encode() for i in range(12)]
    second = [f"second-{i}".encode() for i in range(6)]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for i, value in enumerate(first):
            producer.send(topic, key=str(i).encode(), value=value)
        producer.flush(timeout=POLL_TIMEOUT_S)

        c1 = _consumer(kafka_bootstrap, topic, group)
        got_first = _poll_values(c1, len(first), POLL_TIMEOUT_S)
        c1.commit()
        committed = [c1.committed(TopicPartition(topic, p)) for p in range(3)]
        c1.close(autocommit=False)

        for i, value in enumerate(second):
            producer.send(topic, key=str(i).encode(), value=value)
        producer.flush(timeout=POLL_TIMEOUT_S)

        c2 = _consumer(kafka_bootstrap, topic, group)
        got_second = _poll_values(c2, len(second), POLL_TIMEOUT_S)
        extra = _poll_values(c2, 1, timeout=2.0)  # nothing before the committed offsets again
        c2.close(autocommit=False)
    finally:
        producer.close()

    assert sorted(got_first) == sorted(first)
    assert sum(offset or 0 for offset in committed) == len(first)
    assert sorted(got_second) == sorted(second)
    assert extra == []


def test_redis_round_trip(redis_client: redis.Redis) -> None:
    assert redis_client.ping()
    assert redis_client.dbsize() == 0  # a database of this test's own
    redis_client.set("smoke:str", "drift")
    redis_client.hset("smoke:hash", mapping={"model": "m1", "count": 3})
    redis_client.rpush("smoke:list", "a", "b")
    redis_client.expire("smoke:str", 60)

    assert redis_client.get("smoke:str") == b"drift"
    assert redis_client.hgetall("smoke:hash") == {b"model": b"m1", b"count": b"3"}
    assert redis_client.hincrby("smoke:hash", "count", 2) == 5
    assert redis_client.lrange("smoke:list", 0, -1) == [b"a", b"b"]
    assert 0 < redis_client.ttl("smoke:str") <= 60
    assert redis_client.dbsize() == 3


def test_prometheus_scrapes_a_registered_exporter(prometheus: Prometheus) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("driftscope_smoke_value", "smoke-test sample", registry=registry)
    value = round(random.uniform(1.0, 1000.0), 3)
    gauge.set(value)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        run = uuid.uuid4().hex[:12]
        prometheus.register_target(f"127.0.0.1:{server.server_port}", {"smoke_run": run})
        result = prometheus.wait_for(f'driftscope_smoke_value{{smoke_run="{run}"}}', timeout=60)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    assert len(result) == 1
    assert result[0]["metric"]["job"] == "driftscope"
    assert float(result[0]["value"][1]) == value


def test_prometheus_rule_alert_reaches_alertmanager(
    prometheus: Prometheus, alertmanager_url: str
) -> None:
    name = f"DriftscopeRuleSmoke{uuid.uuid4().hex[:8]}"
    prometheus.add_rules(
        f"groups:\n- name: {name}\n  rules:\n  - alert: {name}\n    expr: vector(1)\n"
        "    labels: {severity: info}\n"
    )
    query = urllib.parse.urlencode({"filter": f'alertname="{name}"'})
    deadline = time.monotonic() + POLL_TIMEOUT_S
    listed: list[dict[str, Any]] = []
    while not listed and time.monotonic() < deadline:
        listed = http_json(f"{alertmanager_url}/api/v2/alerts?{query}")
        time.sleep(0.5)
    assert [a["labels"]["alertname"] for a in listed] == [name]


class _WebhookSink(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_alertmanager_accepts_and_delivers_an_alert(
    stack: StackInfo, alertmanager_url: str
) -> None:
    assert _http_status(f"{alertmanager_url}/-/ready") == 200

    hook = urllib.parse.urlsplit(stack.env["DRIFTSCOPE_ALERT_WEBHOOK_URL"])
    sink = type("Sink", (_WebhookSink,), {"received": []})
    server = HTTPServer((hook.hostname or "127.0.0.1", hook.port or 80), sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    name = f"DriftscopeSmoke{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": name, "severity": "info"},
        "annotations": {"summary": "stack smoke test"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }
    try:
        http_json(f"{alertmanager_url}/api/v2/alerts", data=[alert], method="POST")
        query = urllib.parse.urlencode({"filter": f'alertname="{name}"'})
        listed = http_json(f"{alertmanager_url}/api/v2/alerts?{query}")
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while not _delivered(sink.received, name) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    assert [a["labels"]["alertname"] for a in listed] == [name]
    assert listed[0]["status"]["state"] == "active"
    assert _delivered(sink.received, name), f"webhook got {sink.received}"


def _delivered(payloads: list[dict[str, Any]], name: str) -> bool:
    return any(a["labels"].get("alertname") == name for p in payloads for a in p["alerts"])


def _http_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return int(resp.status)


# ---- the stack script itself -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pids() -> dict[str, int | None]:
    done = run_stack("status", "--json", timeout=60)
    return {c["name"]: c["pid"] for c in json.loads(done.stdout)["components"]}


def test_up_twice_is_harmless(stack: StackInfo) -> None:
    before = _pids()
    done = run_stack("up", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "already running" in done.stdout
    assert _pids() == before


def test_up_fails_loudly_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        env = {"DRIFTSCOPE_STACK_DIR": str(tmp_path), "DRIFTSCOPE_REDIS_PORT": str(port)}
        done = run_stack("up", "redis", env=env, timeout=60)
    assert done.returncode == 1  # stack up: a component failed (stack docstring)
    assert f"[{port}]" in done.stdout + done.stderr


def test_up_fails_loudly_with_the_log_tail_when_a_component_dies(tmp_path: Path) -> None:
    rules = tmp_path / "prometheus" / "rules"
    rules.mkdir(parents=True)
    (rules / "broken.yml").write_text("groups: [{name: x, rules: [{alert: A, expr: 'sum('}]}]\n")
    env = {"DRIFTSCOPE_STACK_DIR": str(tmp_path), "DRIFTSCOPE_PROMETHEUS_PORT": str(_free_port())}
    done = run_stack("up", "prometheus", env=env, timeout=120)
    assert done.returncode == 1
    assert "prometheus exited before it answered" in done.stderr
    assert "broken.yml" in done.stderr  # the log tail, naming the cause
    assert not (tmp_path / "prometheus" / "prometheus.pid").exists()


def test_down_stops_what_up_started_and_nothing_else(stack: StackInfo, tmp_path: Path) -> None:
    session = _pids()
    port = _free_port()
    env = {"DRIFTSCOPE_STACK_DIR": str(tmp_path), "DRIFTSCOPE_REDIS_PORT": str(port)}
    up = run_stack("up", "redis", env=env, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    pid = int((tmp_path / "redis" / "redis.pid").read_text().split()[0])
    assert Path(f"/proc/{pid}").exists()

    down = run_stack("down", env=env, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    assert not (tmp_path / "redis" / "redis.pid").exists()
    assert _pids() == session  # the session's stack was not touched
