"""Helpers for the tests that prove the observability stack end to end: a real collector process
fed a drifting stream, scraped by the stack's Prometheus under the job names of the shipped
rules, the shipped rules loaded there, and the shipped Alertmanager config installed for a test.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tests.stack import CLI_MODULE, Prometheus, StackInfo

REPO = Path(__file__).resolve().parents[1]
RULES = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))
AM_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"

SMALL_WINDOWS: dict[str, Any] = {
    "drift": {"reference_size": 300, "window_size": 200, "min_window": 50, "test_every": 25},
    "segments": {"label": "route", "allowed": ["billing", "tech"]},
    "checkpoint_every": 100,
}
_WORDS = ("invoice", "parcel", "password", "restart", "refund", "account", "settings", "order")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drifting_stream(model: str, n_reference: int, n_drifted: int, *, seed: int = 0,
                    routes: tuple[str, ...] = ("billing",)) -> Iterator[dict[str, Any]]:
    """OutputEvents: ``n_reference`` per route with long, confident answers, then ``n_drifted``
    per route that are short, less confident and refuse more often."""
    rng = random.Random(seed)
    t0 = datetime.now(UTC) - timedelta(seconds=n_reference + n_drifted)
    for i in range((n_reference + n_drifted) * len(routes)):
        drifted = i >= n_reference * len(routes)
        route = routes[i % len(routes)]
        words = max(3, int(rng.gauss(12 if drifted else 40, 3)))
        refused = rng.random() < (0.3 if drifted else 0.02)
        output = ("I'm sorry, but I can't help with that request." if refused else
                  " ".join(rng.choice(_WORDS) for _ in range(words)) + ".")
        mean = -1.4 if drifted else -0.5
        yield {
            "event_id": f"{model}-{i}", "ts": (t0 + timedelta(seconds=i)).isoformat(),
            "model": model, "model_version": "v1", "segment": {"route": route},
            "prompt": "How do I get my invoice?", "output": output,
            "token_logprobs": [min(0.0, rng.gauss(mean, 0.3)) for _ in range(words)],
            "latency_ms": rng.gauss(900 if drifted else 400, 50), "finish_reason": "stop",
        }  # fmt: skip


def produce(bootstrap: str, topic: str, values: Iterator[bytes] | list[bytes], *,
            key: bytes) -> int:
    """Send ``values`` keyed by ``key``: events are keyed by model, so one model's stream stays
    on one partition (the collector's monitors live with their partition)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    n = 0
    try:
        for value in values:
            producer.send(topic, key=key, value=value)
            n += 1
        producer.flush(timeout=60)
    finally:
        producer.close()
    return n


class CollectorProcess:
    """``driftscope collector`` as a subprocess: ``python -m driftscope_llm.services.cli.main
    collector``."""

    def __init__(self, workdir: Path, *, bootstrap: str, topic: str, redis_url: str,
                 config: Mapping[str, Any] = SMALL_WINDOWS) -> None:
        self.workdir = workdir
        self.metrics_port = free_port()
        self.log_path = workdir / "collector.log"
        cfg = workdir / "collector.yaml"
        cfg.write_text(yaml.safe_dump(dict(config)))
        env = {
            **os.environ,
            "DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "DRIFTSCOPE_TOPICS__OUTPUTS": topic,
            "DRIFTSCOPE_TOPICS__DEAD_LETTER": f"{topic}.dlq",
            "DRIFTSCOPE_TOPICS__ANOMALIES": f"{topic}.anomalies",
            "DRIFTSCOPE_GROUP_ID": f"collector-{topic}",
            "DRIFTSCOPE_REDIS__URL": redis_url,
            "DRIFTSCOPE_METRICS__PORT": str(self.metrics_port),
            "DRIFTSCOPE_EMBEDDER__ENABLED": "false",
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", CLI_MODULE, "collector", "--config", str(cfg),
                 "--max-idle", "120"],
                env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._wait_metrics()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def _wait_metrics(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.address}/metrics", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"collector metrics never answered:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextmanager
def shipped_rules(stack: StackInfo, prometheus: Prometheus) -> Iterator[list[Path]]:
    """The rule files of deploy/prometheus/rules, loaded into the stack's Prometheus."""
    tag = uuid.uuid4().hex[:8]
    paths = []
    try:
        for src in RULES:
            dst = stack.rules_dir / f"test-{tag}-{src.name}"
            tmp = dst.with_suffix(".tmp")
            tmp.write_text(src.read_text())
            os.replace(tmp, dst)
            paths.append(dst)
        prometheus.reload()
        yield paths
    finally:
        for p in paths:
            p.unlink(missing_ok=True)
        prometheus.reload()


def wait_rules_loaded(prometheus_url: str, names: set[str], timeout: float = 30.0) -> None:
    from tests.stack import http_json

    deadline = time.monotonic() + timeout
    loaded: set[str] = set()
    while time.monotonic() < deadline:
        groups = http_json(f"{prometheus_url}/api/v1/rules")["data"]["groups"]
        loaded = {r["name"] for g in groups for r in g["rules"]}
        if names <= loaded:
            return
        time.sleep(0.5)
    raise AssertionError(f"rules {names - loaded} not loaded by Prometheus")


@contextmanager
def shipped_alertmanager_config(stack: StackInfo, *, receiver_url: str, token_file: Path,
                                fast: bool = True) -> Iterator[str]:
    """Install deploy/alertmanager/alertmanager.yml in the stack's Alertmanager with the receiver
    URL and token file of this test (and, with ``fast``, one-second group timings); routes,
    matchers, grouping labels and inhibitions stay as shipped. Restores the stack's config."""
    from tests.stack import http_json

    path = Path(stack.env["DRIFTSCOPE_STACK_DIR"]) / "alertmanager" / "alertmanager.yml"
    original = path.read_text()
    cfg = yaml.safe_load(AM_CONFIG.read_text())
    for receiver in cfg["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = receiver_url
            hook["http_config"]["authorization"]["credentials_file"] = str(token_file)

    def shorten(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
        for child in route.get("routes", []):
            shorten(child)

    if fast:
        cfg["route"]["group_wait"] = "1s"
        cfg["route"]["group_interval"] = "1s"
        shorten(cfg["route"])
    marker = f"# driftscope test {uuid.uuid4().hex}\n"
    try:
        path.write_text(marker + yaml.safe_dump(cfg))
        _am_reload(stack.alertmanager_url)
        status = http_json(f"{stack.alertmanager_url}/api/v2/status")
        assert receiver_url in status["config"]["original"], "Alertmanager kept its old config"
        yield receiver_url
    finally:
        path.write_text(original)
        _am_reload(stack.alertmanager_url)


def _am_reload(url: str) -> None:
    req = urllib.request.Request(f"{url}/-/reload", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass


def to_bytes(events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for e in events:
        yield json.dumps(e).encode()
