"""Settings of the OTLP/HTTP receiver (kept apart from the server so that reading them imports
neither protobuf nor the HTTP server)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from driftscope_llm.services.http_server import ServerLimits

__all__ = ["OtlpReceiverSettings"]


class OtlpReceiverSettings(BaseModel):
    """Where the receiver listens and what it accepts."""

    host: str = Field(default="127.0.0.1", description="Bind address; loopback unless exposed.")
    port: int = Field(default=4318, ge=0, le=65535, description="4318 is OTLP/HTTP's port.")
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024,
        description="Largest body accepted, before and after gzip decompression (413 above).")
    bearer_token: SecretStr | None = Field(
        default=None, description="When set, requests must send 'Authorization: Bearer <token>'.")
    produce_timeout_s: float = Field(
        default=10.0, gt=0, description="How long to wait for Kafka's acknowledgement (503 "
                                        "after).")
    retry_after_s: int = Field(default=5, ge=1,
                               description="Retry-After sent with a 429 or a 503.")
    max_concurrent_requests: int = Field(
        default=32, ge=1,
        description="Requests converted and delivered at once; more get 429 with Retry-After "
                    "(memory stays bounded at about this many bodies).")
    backlog: int = Field(
        default=1024, ge=16,
        description="Listen backlog: connections the kernel queues while every thread is busy "
                    "(capped by net.core.somaxconn).")
    max_connections: int = Field(
        default=256, ge=1,
        description="Connections served at once (one thread each); more wait in the backlog.")
    header_timeout_s: float = Field(
        default=10.0, gt=0,
        description="Deadline for a request line and headers, keep-alive idle time included "
                    "(408 and close after).")
    body_timeout_s: float = Field(
        default=30.0, gt=0,
        description="Deadline for a whole body once the headers are in (408 and close after).")

    def limits(self) -> ServerLimits:
        """The HTTP server's limits (docs/ingestion.md, "Limits")."""
        return ServerLimits(backlog=self.backlog, max_connections=self.max_connections,
                            header_timeout_s=self.header_timeout_s,
                            body_timeout_s=self.body_timeout_s)
