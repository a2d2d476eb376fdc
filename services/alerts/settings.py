"""Settings of webhook delivery and of the Alertmanager-compatible receiver.

:class:`WebhookSettings` is what a deployable's settings include (``webhooks:`` in the YAML file,
``DRIFTSCOPE_WEBHOOKS__ENDPOINTS='[...]'`` as JSON in the environment);
:class:`AlertReceiverSettings` configures the receiver. Secrets (HMAC keys, bearer tokens, and
endpoint URLs, which for Slack carry the token in the path) are :class:`pydantic.SecretStr`: they
print as ``**********`` and are only unwrapped at the moment they are used.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

__all__ = [
    "AlertReceiverSettings",
    "EventKind",
    "RetryPolicy",
    "WebhookEndpoint",
    "WebhookSettings",
]


class EventKind(StrEnum):
    """What happened. ``incident.*`` come from the collector and worker, ``alert.*`` are
    Prometheus alerts relayed by the receiver."""

    INCIDENT_OPENED = "incident.opened"
    INCIDENT_UPDATED = "incident.updated"
    INCIDENT_ATTRIBUTED = "incident.attributed"
    ALERT_FIRING = "alert.firing"
    ALERT_RESOLVED = "alert.resolved"


class RetryPolicy(BaseModel):
    """Capped exponential backoff with full jitter.

    Before attempt ``n + 1`` (``n >= 1`` attempts made) the sender waits a uniform random time
    in ``[0, min(max_delay_s, base_delay_s * 2 ** (n - 1))]`` — "full jitter" from Brooker,
    *Exponential Backoff And Jitter* (AWS Architecture Blog, 2015), which spreads the retries of
    many senders that failed together instead of synchronising them. A ``Retry-After`` answer
    (429/503) waits at least what the receiver asked, still capped by ``max_delay_s``.
    """

    max_attempts: int = Field(default=5, ge=1, le=20, description="Attempts, the first included.")
    base_delay_s: float = Field(default=0.5, ge=0.0)
    max_delay_s: float = Field(default=30.0, ge=0.0)

    def cap(self, attempts_made: int) -> float:
        """Upper bound of the jittered wait after ``attempts_made`` failed attempts."""
        exp = min(attempts_made - 1, 62)  # 2**62 * anything is past any cap; no float overflow
        return float(min(self.max_delay_s, self.base_delay_s * 2.0**exp))


class WebhookEndpoint(BaseModel):
    """One destination. ``name`` identifies it in logs, metrics and dead-letter records."""

    model_config = {"frozen": True}

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    url: SecretStr = Field(description="http(s) URL; secret because Slack's URLs carry a token.")
    format: Literal["generic", "slack"] = "generic"
    secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key for X-Driftscope-Signature; required for format generic.",
    )
    events: list[EventKind] = Field(
        default_factory=lambda: list(EventKind), description="Event kinds sent here."
    )
    timeout_s: float = Field(default=5.0, gt=0.0, le=120.0, description="Per attempt.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    include_text: bool = Field(
        default=False,
        description="Send exemplar prompts and outputs (production text) in the payload; off by "
        "default so user content leaves only where it is meant to.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: SecretStr) -> SecretStr:
        raw = v.get_secret_value()
        if not raw.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")  # value not echoed
        return v

    @model_validator(mode="after")
    def _generic_is_signed(self) -> WebhookEndpoint:
        if self.format == "generic" and self.secret is None:
            raise ValueError(f"endpoint {self.name!r}: format generic needs a secret")
        if self.secret is not None and len(self.secret.get_secret_value()) < 16:
            raise ValueError(f"endpoint {self.name!r}: secret must be at least 16 characters")
        return self


class WebhookSettings(BaseModel):
    """Every webhook destination of one deployable, and where failed deliveries are recorded."""

    endpoints: list[WebhookEndpoint] = Field(default_factory=list)
    dead_letter_key: str = Field(
        default="driftscope:webhooks:dead", description="Redis list of dead-letter records."
    )
    dead_letter_max: int = Field(
        default=10_000, ge=1, description="Newest records kept in the dead-letter list."
    )
    user_agent: str = "driftscope-webhooks/1"

    @field_validator("endpoints")
    @classmethod
    def _unique_names(cls, v: list[WebhookEndpoint]) -> list[WebhookEndpoint]:
        names = [e.name for e in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"endpoint names must be unique; repeated: {dup}")
        return v


class AlertReceiverSettings(BaseModel):
    """The Alertmanager-compatible webhook receiver.

    A request is accepted when it carries ``Authorization: Bearer <bearer_token>`` (what
    Alertmanager's ``http_config.authorization`` sends) or a valid ``X-Driftscope-Signature``
    under one of ``signing_secrets`` (several, to rotate keys). With neither configured the
    receiver refuses to start unless ``allow_unauthenticated`` is set (tests on loopback only).
    """

    host: str = Field(default="127.0.0.1", description="Bind address; loopback unless exposed.")
    port: int = Field(default=9466, ge=0, le=65535)
    path: str = Field(default="/alertmanager", pattern=r"^/[A-Za-z0-9/_.-]*$")
    bearer_token: SecretStr | None = None
    signing_secrets: list[SecretStr] = Field(default_factory=list)
    tolerance_s: float = Field(default=300.0, gt=0.0, description="Signature age accepted.")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    allow_unauthenticated: bool = False

    @model_validator(mode="after")
    def _some_auth(self) -> AlertReceiverSettings:
        unauthenticated = self.bearer_token is None and not self.signing_secrets
        if unauthenticated and not self.allow_unauthenticated:
            raise ValueError(
                "receiver needs bearer_token or signing_secrets (or allow_unauthenticated: true)"
            )
        return self
