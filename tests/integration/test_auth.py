"""Authenticated transports: Kafka SASL/PLAIN and Redis requirepass, on a private stack.

The session's shared stack stays unauthenticated; this module starts its own Kafka (a PLAINTEXT
plus a SASL_PLAINTEXT listener) and Redis (requirepass) with the project's stack script.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from driftscope_llm.services.bus.preflight import check_kafka_auth
from driftscope_llm.services.config import KafkaSettings, RedisSettings
from driftscope_llm.services.errors import BusError, StoreError
from driftscope_llm.services.store.redis_store import RedisStore
from tests.collector_harness import free_port
from tests.stack import STACK_SCRIPT

KAFKA_USER, KAFKA_PASSWORD = "driftscope", "kafka-pw-7f3a9c"
REDIS_PASSWORD = "redis-pw-1b2c3d"


class AuthStack:
    def __init__(self, root: Path) -> None:
        self.sasl_port = free_port()
        self.redis_port = free_port()
        self.env = {
            **os.environ,
            "DRIFTSCOPE_STACK_DIR": str(root),
            "DRIFTSCOPE_KAFKA_PORT": str(free_port()),
            "DRIFTSCOPE_KAFKA_CONTROLLER_PORT": str(free_port()),
            "DRIFTSCOPE_KAFKA_SASL_PORT": str(self.sasl_port),
            "DRIFTSCOPE_KAFKA_SASL_USERS": f"{KAFKA_USER}:{KAFKA_PASSWORD}",
            "DRIFTSCOPE_REDIS_PORT": str(self.redis_port),
            "DRIFTSCOPE_REDIS_PASSWORD": REDIS_PASSWORD,
        }

    def run(self, *args: str) -> None:
        done = subprocess.run([str(STACK_SCRIPT), *args], env=self.env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, f"stack {' '.join(args)} failed:\n{done.stdout}{done.stderr}"

    def kafka(self, password: str) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=f"127.0.0.1:{self.sasl_port}", security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN", sasl_username=KAFKA_USER, sasl_password=SecretStr(password),
            request_timeout_ms=10_000)

    def redis(self, password: str | None) -> RedisSettings:
        return RedisSettings(url=f"redis://127.0.0.1:{self.redis_port}/0",
                             password=SecretStr(password) if password else None,
                             socket_timeout_s=2.0)


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStack]:
    stack = AuthStack(tmp_path_factory.mktemp("auth-stack"))
    stack.run("up", "kafka", "redis")
    try:
        yield stack
    finally:
        stack.run("down", "kafka", "redis")


def test_kafka_sasl_right_password_round_trip(auth_stack: AuthStack) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    settings = auth_stack.kafka(KAFKA_PASSWORD)
    check_kafka_auth(settings)
    topic = f"auth-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(**settings.client_kwargs())
    producer.send(topic, b"hello").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, group_id="auth-test", auto_offset_reset="earliest",
                             **settings.client_kwargs())
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            got.extend(r.value for r in records)
    consumer.close()
    assert got == [b"hello"]


def test_kafka_sasl_wrong_password_is_a_clear_quick_error(auth_stack: AuthStack) -> None:
    started = time.monotonic()
    with pytest.raises(BusError) as info:
        check_kafka_auth(auth_stack.kafka("not-the-password"))
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "authentication failed" in message and repr(KAFKA_USER) in message
    assert "not-the-password" not in message and KAFKA_PASSWORD not in message
    assert info.value.address == f"127.0.0.1:{auth_stack.sasl_port}"


def test_collector_cli_refuses_wrong_kafka_password(auth_stack: AuthStack,
                                                    tmp_path: Path) -> None:
    env = {**os.environ,
           "DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{auth_stack.sasl_port}",
           "DRIFTSCOPE_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "DRIFTSCOPE_KAFKA__SASL_MECHANISM": "PLAIN",
           "DRIFTSCOPE_KAFKA__SASL_USERNAME": KAFKA_USER,
           "DRIFTSCOPE_KAFKA__SASL_PASSWORD": "wrong-pw-123",
           "DRIFTSCOPE_REDIS__URL": f"redis://127.0.0.1:{auth_stack.redis_port}/0",
           "DRIFTSCOPE_REDIS__PASSWORD": REDIS_PASSWORD,
           "DRIFTSCOPE_METRICS__PORT": "0",
           "DRIFTSCOPE_EMBEDDER__ENABLED": "false"}
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).parent / "driftscope"), "collector",
                           "--max-idle", "5"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, check=False)
    assert done.returncode == 3  # EXIT_SERVICE: BusError from the SASL preflight
    assert time.monotonic() - started < 60
    out = done.stdout + done.stderr
    assert "authentication failed" in out, out
    assert "wrong-pw-123" not in out and REDIS_PASSWORD not in out


def test_redis_store_with_password(auth_stack: AuthStack) -> None:
    from driftscope_llm.services.store.model import Incident

    s = auth_stack.redis(REDIS_PASSWORD)
    store = RedisStore(redis.Redis.from_url(s.url, **s.client_kwargs()), retention_s=120)
    now = datetime.now(UTC)
    inc = Incident(id="inc-auth", opened_at=now, updated_at=now, model="m", model_version="1",
                   segment="all", signal="refusal", detector="cusum", statistic=1.0,
                   threshold=0.5, effect_size=0.2, event_id="e1")
    store.save_incident(inc)
    assert store.get_incident("inc-auth").model == "m"
    assert 0 < store.r.ttl("driftscope:incident:inc-auth") <= 120


@pytest.mark.parametrize("password", [None, "not-the-redis-password"])
def test_redis_wrong_or_missing_password_is_a_store_error(auth_stack: AuthStack,
                                                          password: str | None) -> None:
    s = auth_stack.redis(password)
    store = RedisStore(redis.Redis.from_url(s.url, **s.client_kwargs()))
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        store.get_incident("anything")
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "redis" in message.lower()
    assert "not-the-redis-password" not in message and REDIS_PASSWORD not in message


def test_incidents_purge_by_id_and_before(auth_stack: AuthStack) -> None:
    from datetime import timedelta

    from driftscope_llm.services.store.model import Incident

    s = auth_stack.redis(REDIS_PASSWORD)
    store = RedisStore(redis.Redis.from_url(s.url, **s.client_kwargs()), key_prefix="purge:")
    now = datetime.now(UTC)
    for i, age in enumerate([10, 5, 1]):
        at = now - timedelta(days=age)
        store.save_incident(Incident(
            id=f"inc-{i}", opened_at=at, updated_at=at, model="m", model_version="1",
            segment="all", signal="s", detector="d", statistic=1.0, threshold=0.5,
            effect_size=0.1, event_id=f"e{i}"))
    env = {**os.environ, "DRIFTSCOPE_REDIS__URL": s.url,
           "DRIFTSCOPE_REDIS__PASSWORD": REDIS_PASSWORD, "DRIFTSCOPE_REDIS__KEY_PREFIX": "purge:"}
    cli = str(Path(sys.executable).parent / "driftscope")
    before = (now - timedelta(days=3)).isoformat()
    done = subprocess.run([cli, "incidents", "purge", "--before", before], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert [i.id for i in store.list_incidents()] == ["inc-2"]
    done = subprocess.run([cli, "incidents", "purge", "inc-2"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert store.list_incidents() == []
