"""How to reach Kafka, and which topics carry what: the bus's own settings.

Composed into every deployable's settings by :mod:`driftscope_llm.services.config`
(``kafka:`` and ``topics:`` in the YAML file, ``DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS`` and so on in
the environment); the bus receives these sub-models only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr

__all__ = ["ConsumerSettings", "KafkaSettings", "TopicSettings"]


class KafkaSettings(BaseModel):
    """How to reach the Kafka cluster."""

    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "driftscope"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    request_timeout_ms: int = Field(default=30_000, ge=1000)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments common to every kafka-python client the project creates."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.sasl_mechanism:
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.ssl_cafile:
            kw["ssl_cafile"] = str(self.ssl_cafile)
        return kw


class ConsumerSettings(BaseModel):
    """How the collector's consumer fetches from Kafka (kafka-python's names and meanings).

    The defaults come from ``benchmarks/collector_throughput.py`` (``docs/collector.md``,
    "Consumer settings"): the collector observes each poll as one batch, and a poll of up to
    2,000 records gives the vectorised detectors long columns, while one poll still takes well
    under a second to handle (far from ``max.poll.interval.ms``). The fetch sizes are
    kafka-python's own defaults, which already return more than a poll takes from one
    partition of ordinary (≈ 1 KB) events; raise ``max_partition_fetch_bytes`` for outputs
    of tens of kilobytes, so one fetch still fills a poll. ``fetch_min_bytes`` above 1 trades
    latency for fewer fetch round trips and did not pay on a busy topic.
    """

    max_poll_records: int = Field(
        default=2000, ge=1, description="Most records one poll returns (one batch).")
    fetch_min_bytes: int = Field(
        default=1, ge=1, description="The broker answers a fetch once it has this much.")
    fetch_max_wait_ms: int = Field(
        default=500, ge=0, description="...or once this long has passed.")
    max_partition_fetch_bytes: int = Field(
        default=1 << 20, ge=1024, description="Most bytes one fetch takes from one partition.")
    fetch_max_bytes: int = Field(
        default=50 << 20, ge=1024, description="Most bytes one fetch takes in all.")

    def consumer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``KafkaConsumer``."""
        return self.model_dump()


class TopicSettings(BaseModel):
    """Topic names: production outputs, their dead letters, anomalies, attributions."""

    outputs: str = "llm.outputs"
    dead_letter: str = "llm.outputs.dlq"
    anomalies: str = "driftscope.anomalies"
    attributions: str = "driftscope.attributions"
