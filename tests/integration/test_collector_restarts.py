"""The collector rides out a Redis restart and a Kafka broker restart without losing events.

Runs on a private Kafka + Redis (the project's stack script, own directory and ports), so
restarting them does not disturb the session's shared stack.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from tests.collector_harness import (
    CollectorProcess,
    checkpoint_totals,
    free_port,
    incidents,
    produce,
)
from tests.stack import STACK_SCRIPT


class PrivateStack:
    def __init__(self, root: Path) -> None:
        self.env = {
            **os.environ,
            "DRIFTSCOPE_STACK_DIR": str(root),
            "DRIFTSCOPE_KAFKA_PORT": str(free_port()),
            "DRIFTSCOPE_KAFKA_CONTROLLER_PORT": str(free_port()),
            "DRIFTSCOPE_REDIS_PORT": str(free_port()),
        }
        self.bootstrap = f"127.0.0.1:{self.env['DRIFTSCOPE_KAFKA_PORT']}"
        self.redis_url = f"redis://127.0.0.1:{self.env['DRIFTSCOPE_REDIS_PORT']}/0"

    def run(self, *args: str) -> None:
        done = subprocess.run([str(STACK_SCRIPT), *args], env=self.env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, f"stack {' '.join(args)} failed:\n{done.stdout}{done.stderr}"


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[PrivateStack]:
    stack = PrivateStack(tmp_path / "stack")
    stack.run("up", "kafka", "redis")
    try:
        yield stack
    finally:
        stack.run("down", "kafka", "redis")


def _wait_totals(client: redis.Redis, topic: str, at_least: int, c: CollectorProcess,
                 timeout: float = 180.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = checkpoint_totals(client, topic)
        except redis.exceptions.ConnectionError:
            got = 0
        if got >= at_least:
            return got
        assert c.proc is not None and c.proc.poll() is None, c.log_text()
        time.sleep(0.2)
    raise AssertionError(f"totals never reached {at_least}:\n{c.log_text()}")


def test_redis_and_kafka_restarts_lose_no_events(private_stack: PrivateStack,
                                                 tmp_path: Path) -> None:
    topic = "llm.outputs.restarts"
    events = list(generate_events(StreamSpec(
        n=6000, seed=9, drifts=(Drift(start=4000, route="billing", refusal_rate=0.3),))))
    n = len(events)
    produce(private_stack.bootstrap, topic, events[:4000])
    client = redis.Redis.from_url(private_stack.redis_url)
    c = CollectorProcess(private_stack.bootstrap, private_stack.redis_url, topic, tmp_path,
                         group_id="g-restarts")
    c.start(max_idle=10)

    _wait_totals(client, topic, 1000, c)
    private_stack.run("restart", "redis")  # no persistence: the store comes back empty
    _wait_totals(client, topic, 2500, c)  # checkpoints re-written from the collector's state
    private_stack.run("restart", "kafka")  # same data: topics and committed offsets survive
    produce(private_stack.bootstrap, topic, events[4000:])  # the drift arrives after both
    assert c.wait_exit(timeout=300) == 0, c.log_text()

    assert checkpoint_totals(client, topic) == n
    found = incidents(client)
    facets = {(f["segment"], f["signal"]) for i in found for f in i.get("facets", [])}
    # the refusal drift planted in billing after both restarts, found in billing's stream, and
    # one incident for that one change (the model-level stream a facet of it, when it fires)
    assert ("billing", "refusal") in facets, f"not detected after the restarts: {facets}"
    assert len(found) == 1 and {seg for seg, _ in facets} <= {"billing", "all"}, facets
    client.close()
