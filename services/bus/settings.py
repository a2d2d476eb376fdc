"""How to reach Kafka, and which topics carry what: the bus's own settings.

Composed into every deployable's settings by :mod:`driftscope_llm.services.config`
(``kafka:`` and ``topics:`` in the YAML file, ``DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS`` and so on in
the environment); the bus receives these sub-models only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr

__all__ = ["KafkaSettings", "TopicSettings"]


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


class TopicSettings(BaseModel):
    """Topic names: production outputs, their dead letters, anomalies, attributions."""

    outputs: str = "llm.outputs"
    dead_letter: str = "llm.outputs.dlq"
    anomalies: str = "driftscope.anomalies"
    attributions: str = "driftscope.attributions"
