"""What the local stack reads from the environment, read once (``Settings.from_env``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HOST", "Settings"]

HOST = "127.0.0.1"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"stack: {name}={raw!r} is not an integer") from None


@dataclass(frozen=True)
class Settings:
    """Ports, paths and versions of the stack. Defaults avoid every service's usual port."""

    root: Path
    kafka_port: int
    controller_port: int
    redis_port: int
    prometheus_port: int
    alertmanager_port: int
    webhook_url: str
    kafka_version: str
    log4j_version: str
    kafka_heap: str
    timeout: int
    cache: Path
    kafka_sasl_port: int = 0  # 0: no SASL_PLAINTEXT listener
    kafka_sasl_users: str = ""  # "user:password,user2:password2" accepted on that listener
    redis_password: str = ""  # non-empty: Redis starts with requirepass

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            root=Path(env.get("DRIFTSCOPE_STACK_DIR") or "/tmp/driftscope-stack"),
            kafka_port=_int(env, "DRIFTSCOPE_KAFKA_PORT", 19092),
            controller_port=_int(env, "DRIFTSCOPE_KAFKA_CONTROLLER_PORT", 19094),
            redis_port=_int(env, "DRIFTSCOPE_REDIS_PORT", 16379),
            prometheus_port=_int(env, "DRIFTSCOPE_PROMETHEUS_PORT", 19090),
            alertmanager_port=_int(env, "DRIFTSCOPE_ALERTMANAGER_PORT", 19093),
            webhook_url=env.get("DRIFTSCOPE_ALERT_WEBHOOK_URL")
            or "http://127.0.0.1:19099/alertmanager",
            kafka_version=env.get("DRIFTSCOPE_KAFKA_VERSION") or "4.1.1",
            log4j_version=env.get("DRIFTSCOPE_LOG4J_VERSION") or "2.24.3",
            kafka_heap=env.get("DRIFTSCOPE_KAFKA_HEAP") or "512m",
            timeout=_int(env, "DRIFTSCOPE_STACK_TIMEOUT", 120),
            cache=Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "driftscope",
            kafka_sasl_port=_int(env, "DRIFTSCOPE_KAFKA_SASL_PORT", 0),
            kafka_sasl_users=env.get("DRIFTSCOPE_KAFKA_SASL_USERS")
            or "driftscope:driftscope-secret",
            redis_password=env.get("DRIFTSCOPE_REDIS_PASSWORD", ""),
        )

    def sasl_users(self) -> dict[str, str]:
        """``DRIFTSCOPE_KAFKA_SASL_USERS`` as {user: password}."""
        users = {}
        for item in filter(None, self.kafka_sasl_users.split(",")):
            user, sep, password = item.partition(":")
            if not sep or not user or '"' in item or "\\" in item:
                raise SystemExit("stack: DRIFTSCOPE_KAFKA_SASL_USERS wants user:password,... "
                                 "(no quotes or backslashes)")
            users[user] = password
        return users

    @property
    def kafka_libs(self) -> Path:
        """The broker classpath, one directory per Kafka version, shared by every stack dir."""
        return self.cache / f"kafka-{self.kafka_version}" / "libs"

    @property
    def targets_dir(self) -> Path:
        """Prometheus file_sd directory: every ``*.json`` in it is a list of scrape targets."""
        return self.root / "prometheus" / "targets"

    @property
    def rules_dir(self) -> Path:
        """Prometheus loads every ``*.yml``/``*.yaml`` rule file here (reload: POST /-/reload)."""
        return self.root / "prometheus" / "rules"

    def env(self) -> dict[str, str]:
        """The addresses other programs need, as written to ``<root>/stack.env``."""
        return {
            "DRIFTSCOPE_STACK_DIR": str(self.root),
            "DRIFTSCOPE_KAFKA_BOOTSTRAP": f"{HOST}:{self.kafka_port}",
            "DRIFTSCOPE_REDIS_URL": f"redis://{HOST}:{self.redis_port}/0",
            "DRIFTSCOPE_PROMETHEUS_URL": f"http://{HOST}:{self.prometheus_port}",
            "DRIFTSCOPE_ALERTMANAGER_URL": f"http://{HOST}:{self.alertmanager_port}",
            "DRIFTSCOPE_PROMETHEUS_TARGETS_DIR": str(self.targets_dir),
            "DRIFTSCOPE_PROMETHEUS_TARGETS_FILE": str(self.targets_dir / "driftscope.json"),
            "DRIFTSCOPE_PROMETHEUS_RULES_DIR": str(self.rules_dir),
            "DRIFTSCOPE_ALERT_WEBHOOK_URL": self.webhook_url,
            **({"DRIFTSCOPE_KAFKA_SASL_BOOTSTRAP": f"{HOST}:{self.kafka_sasl_port}"}
               if self.kafka_sasl_port else {}),
        }
