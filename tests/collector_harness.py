"""Running a real collector process against the real stack, for integration tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.stack import CLI_MODULE

REPO = Path(__file__).resolve().parents[1]

SMALL_WINDOWS = {
    "segments": {"label": "route", "allowed": ["billing", "shipping", "account", "tech"]},
    "drift": {"reference_size": 400, "min_reference_values": 100, "window_size": 200,
              "min_window": 50, "test_every": 25, "cooldown_events": 200},
    "checkpoint_every": 100,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def produce(bootstrap: str, topic: str, events: Iterable[Mapping[str, Any] | bytes],
            key: bytes | None = b"support-bot", *, key_by_route: bool = False) -> int:
    """Produce events; keyed by model (one stream per partition), or by model|route."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    n = 0
    for ev in events:
        value = ev if isinstance(ev, bytes) else json.dumps(ev).encode()
        k = key
        if key_by_route and not isinstance(ev, bytes):
            k = f"{ev['model']}|{ev['segment']['route']}".encode()
        producer.send(topic, key=k, value=value)
        n += 1
    producer.flush()
    producer.close()
    return n


def consume_all(bootstrap: str, topic: str, *, idle_ms: int = 3000) -> list[Any]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=idle_ms)
    out = list(consumer)
    consumer.close()
    return out


@dataclass
class CollectorProcess:
    """``driftscope collector`` as a subprocess with its own topics, Redis db and metrics port."""

    bootstrap: str
    redis_url: str
    topic: str
    workdir: Path
    config: Mapping[str, Any] = field(default_factory=lambda: SMALL_WINDOWS)
    group_id: str = "collector-test"
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    #: An exported embedder: the embedding signal on, every event embedded (off when None).
    embedder_dir: Path | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "DRIFTSCOPE_TOPICS__OUTPUTS": self.topic,
            "DRIFTSCOPE_TOPICS__DEAD_LETTER": f"{self.topic}.dlq",
            "DRIFTSCOPE_TOPICS__ANOMALIES": f"{self.topic}.anomalies",
            "DRIFTSCOPE_REDIS__URL": self.redis_url,
            "DRIFTSCOPE_METRICS__PORT": str(self.metrics_port),
            "DRIFTSCOPE_EMBEDDER__ENABLED": "false",
            "DRIFTSCOPE_GROUP_ID": self.group_id,
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
        })
        if self.embedder_dir is not None:
            env.update({"DRIFTSCOPE_EMBEDDER__ENABLED": "true",
                        "DRIFTSCOPE_EMBEDDER__REQUIRED": "true",
                        "DRIFTSCOPE_EMBEDDER__MODEL_DIR": str(self.embedder_dir),
                        "DRIFTSCOPE_EMBEDDER__SAMPLING_RATE": "1.0"})
        return env

    def start(self, *, max_idle: float | None = None) -> CollectorProcess:
        cfg = self.workdir / "collector.yaml"
        cfg.write_text(json.dumps(dict(self.config)))
        args = [sys.executable, "-m", CLI_MODULE, "collector", "--config", str(cfg)]
        if max_idle is not None:
            args += ["--max-idle", str(max_idle)]
        with (self.workdir / f"collector-{self.metrics_port}.log").open("ab") as log:
            self.proc = subprocess.Popen(args, env=self.env(), cwd=REPO, stdout=log, stderr=log)
        self.wait_metrics()
        return self

    def log_text(self) -> str:
        path = self.workdir / f"collector-{self.metrics_port}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def wait_metrics(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"collector exited early:\n{self.log_text()}")
            try:
                urllib.request.urlopen(self.metrics_url, timeout=2).read()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"collector metrics never answered:\n{self.log_text()}")

    def metrics(self, timeout: float = 5.0) -> dict[str, float]:
        """Every sample on /metrics, keyed by its exposition line's name+labels."""
        text = urllib.request.urlopen(self.metrics_url, timeout=timeout).read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def wait_exit(self, timeout: float = 300.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"collector did not finish:\n{self.log_text()}") from None


def checkpoint_totals(client: redis.Redis, topic: str, prefix: str = "driftscope:") -> int:
    """Events observed by the detectors, summed over the checkpoints of ``topic``'s partitions.

    Every event feeds its model-level stream (segment ``all``) and one stream per segment label,
    so only the model-level streams' totals are summed: each event is counted once.
    """
    from driftscope_llm.services.collector.segments import MODEL_STREAM
    from driftscope_llm.services.keys import split_key

    total = 0
    for key in client.scan_iter(f"{prefix}cp:{topic}:*"):
        cp = json.loads(client.get(key) or b"{}")
        total += sum(n for sid, n in cp.get("totals", {}).items()
                     if split_key(sid)[2] == MODEL_STREAM)
    return total


def incidents(client: redis.Redis, prefix: str = "driftscope:") -> list[dict[str, Any]]:
    return [json.loads(client.get(k) or b"{}") for k in client.scan_iter(f"{prefix}incident:*")]
