"""The configuration files the stack writes: pure functions of ``Settings``, nothing else."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

from .settings import HOST, Settings

__all__ = [
    "KAFKA_LOG4J2",
    "alertmanager_config",
    "kafka_cluster_id",
    "kafka_listeners",
    "kafka_server_properties",
    "prometheus_config",
]

# Kafka's jars carry no config: WARN everywhere, except the line `up` and humans look for,
# "Kafka Server started" from kafka.server.KafkaRaftServer. Stdout goes to <root>/kafka/kafka.log.
KAFKA_LOG4J2 = """\
status = warn
shutdownHook = disable
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raftserver.name = kafka.server.KafkaRaftServer
logger.raftserver.level = INFO
"""


def kafka_cluster_id() -> str:
    """A Kafka ``Uuid`` string (what ``StorageTool random-uuid`` prints): 16 random bytes,
    URL-safe base64 without padding. Made here to spare a JVM start."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def kafka_listeners(s: Settings) -> dict[str, tuple[str, int]]:
    """Listener name -> (security protocol, port).

    Adding a listener (say ``SASL_PLAINTEXT`` on another port) is one more entry here plus its
    ``listener.name.<name>.*`` SASL settings in ``kafka_server_properties``; the listener lists,
    the protocol map and ``advertised.listeners`` are derived from this table.
    """
    listeners = {
        "PLAINTEXT": ("PLAINTEXT", s.kafka_port),
        "CONTROLLER": ("PLAINTEXT", s.controller_port),
    }
    if s.kafka_sasl_port:
        listeners["SASL_PLAINTEXT"] = ("SASL_PLAINTEXT", s.kafka_sasl_port)
    return listeners


def _sasl_properties(s: Settings) -> dict[str, str]:
    """SASL/PLAIN on the ``SASL_PLAINTEXT`` listener, one ``user_<name>`` per configured user
    (the broker's own traffic stays on the PLAINTEXT listener)."""
    if not s.kafka_sasl_port:
        return {}
    users = " ".join(f'user_{u}="{p}"' for u, p in s.sasl_users().items())
    return {
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config":
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
    }


def kafka_server_properties(s: Settings, data: Path) -> str:
    """Single-node KRaft, broker and controller in one process, data in ``data``."""
    listeners = kafka_listeners(s)
    client = [name for name in listeners if name != "CONTROLLER"]
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{s.controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listeners": ",".join(f"{n}://{HOST}:{port}" for n, (_, port) in listeners.items()),
        "advertised.listeners": ",".join(f"{n}://{HOST}:{listeners[n][1]}" for n in client),
        "listener.security.protocol.map": ",".join(f"{n}:{p}" for n, (p, _) in listeners.items()),
        "log.dirs": str(data),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        # one broker: every internal topic has one replica
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # the log cleaner allocates its dedupe buffer on start (128 MiB by default): keep it
        # small so the broker fits its small heap; compacted internal topics still get cleaned
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        **_sasl_properties(s),
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def prometheus_config(s: Settings) -> str:
    """Scrape and evaluate every second; driftscope exporters are file_sd targets.

    Job ``driftscope`` reads every ``*.json`` in ``s.targets_dir`` (re-read on change and every
    second), so a test or a service registers an exporter by writing one file. Rules come from
    ``s.rules_dir``; alerts go to the stack's Alertmanager.
    """
    cfg = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(s.rules_dir / "*.yml"), str(s.rules_dir / "*.yaml")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"{HOST}:{s.alertmanager_port}"]}]}]
        },
        "scrape_configs": [
            {
                "job_name": "driftscope",
                "file_sd_configs": [
                    {"files": [str(s.targets_dir / "*.json")], "refresh_interval": "1s"}
                ],
            },
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"{HOST}:{s.prometheus_port}"]}],
            },
        ],
    }
    return json.dumps(cfg, indent=2) + "\n"  # JSON is YAML


def alertmanager_config(s: Settings) -> str:
    """Every alert to one webhook receiver (``DRIFTSCOPE_ALERT_WEBHOOK_URL``), grouped by name,
    sent one second after it arrives."""
    cfg = {
        "route": {
            "receiver": "driftscope-webhook",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "driftscope-webhook",
                "webhook_configs": [{"url": s.webhook_url, "send_resolved": True}],
            }
        ],
    }
    return json.dumps(cfg, indent=2) + "\n"
