"""Settings of every deployable, composed at the top, and the one loader.

One pydantic-settings model per deployable: :class:`CollectorSettings` (``driftscope
collector``), :class:`WorkerSettings` (``driftscope worker``), :class:`AlertsSettings` (the
alert receiver, ``driftscope alerts receive``), :class:`IngestServiceSettings` (the OTLP/HTTP
receiver, ``driftscope ingest``) and :class:`CliSettings` (the on-call commands).
Environment prefix ``DRIFTSCOPE_`` with ``__`` for nesting (for example
``DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19092``), optionally seeded from a YAML file by
:func:`load_settings`, the one reader, called once at each entry point.

Each model is composed from sub-models that live beside their owners: ``KafkaSettings`` and
``TopicSettings`` (:mod:`~driftscope_llm.services.bus.settings`), ``RedisSettings``
(:mod:`~driftscope_llm.services.store.settings`), ``DriftSettings``
(:mod:`~driftscope_llm.services.drift.settings`), the collector's signals, segments and
embedder, the worker's model targets (:mod:`~driftscope_llm.services.worker.settings`), webhooks
and the receiver (:mod:`~driftscope_llm.services.alerts.settings`), redaction. Components receive
only the sub-model they need, never a whole deployable's settings, and never read the environment
themselves. This module is above every component in the layering (``docs/architecture.md``): it
imports them, they never import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from driftscope_llm.services.alerts.settings import AlertReceiverSettings, WebhookSettings
from driftscope_llm.services.bus.settings import ConsumerSettings, KafkaSettings, TopicSettings
from driftscope_llm.services.collector.cardinality import CardinalitySettings
from driftscope_llm.services.collector.clock import ClockSettings
from driftscope_llm.services.collector.segments import SegmentSettings
from driftscope_llm.services.collector.settings import EmbedderSettings
from driftscope_llm.services.collector.signals import SignalSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.errors import ConfigError
from driftscope_llm.services.ingest.settings import IngestSettings
from driftscope_llm.services.otlp_receiver.settings import (
    OtlpReceiverSettings,
)
from driftscope_llm.services.security.redaction import RedactionSettings
from driftscope_llm.services.store.settings import RedisSettings
from driftscope_llm.services.worker.settings import ModelTarget

__all__ = [
    "AlertsSettings",
    "CliSettings",
    "CollectorSettings",
    "DriftscopeSettings",
    "EmbedderSettings",
    "IngestServiceSettings",
    "KafkaSettings",
    "MetricsSettings",
    "RedisSettings",
    "SegmentSettings",
    "TopicSettings",
    "WorkerSettings",
    "load_settings",
]


class MetricsSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="Bind address; loopback unless exposed.")
    port: int = Field(default=9464, ge=0, le=65535)


class DriftscopeSettings(BaseSettings):
    """Base of each deployable's settings: DRIFTSCOPE_ prefix, __ nesting, env over file."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTSCOPE_", env_nested_delimiter="__", extra="forbid"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: an operator's DRIFTSCOPE_* variable beats the config file.
        return env_settings, init_settings, file_secret_settings


class CollectorSettings(DriftscopeSettings):
    """The collector: production outputs in, drift metrics and incidents out."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    signals: SignalSettings = Field(default_factory=SignalSettings)
    segments: SegmentSettings = Field(default_factory=SegmentSettings)
    cardinality: CardinalitySettings = Field(
        default_factory=CardinalitySettings,
        description="Caps on models and versions monitored; past them traffic folds into "
                    "'other' (collector/cardinality.py).")
    clock: ClockSettings = Field(
        default_factory=ClockSettings,
        description="How far an event's ts may lie from its broker (or replay) time before it "
                    "is flagged and not trusted; ordering never uses it (collector/clock.py).")
    drift: DriftSettings = Field(
        default_factory=DriftSettings,
        description="Detector settings (driftscope_llm.services.drift.DriftSettings).")
    cooldown_s: float = Field(
        default=3600.0, ge=0,
        description="A repeated anomaly within this many seconds (event time) updates the live "
                    "incident instead of opening a new one.")
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    redaction: RedactionSettings = Field(
        default_factory=RedactionSettings,
        description="Personal data and credentials removed from exemplar prompts and outputs "
                    "before they are stored or sent "
                    "(driftscope_llm.services.security.RedactionSettings).")
    ingest: IngestSettings = Field(
        default_factory=IngestSettings,
        description="Input formats per topic (OutputEvent, OpenAI, OTLP; auto-detected by "
                    "default) and the span mapping (driftscope_llm.services.ingest; "
                    "docs/ingestion.md).")
    group_id: str = "driftscope-collector"
    max_event_bytes: int = Field(default=1_000_000, ge=1024)
    checkpoint_every: int = Field(default=500, ge=1)
    consumer: ConsumerSettings = Field(
        default_factory=ConsumerSettings,
        description="Poll and fetch sizes of the collector's Kafka consumer (docs/collector.md).")


class WorkerSettings(DriftscopeSettings):
    """The attribution worker: anomalies in, attribution reports out, per model target."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    metrics: MetricsSettings = Field(default_factory=lambda: MetricsSettings(port=9465))
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    group_id: str = "driftscope-worker"
    models: dict[str, ModelTarget] = Field(
        default_factory=dict, description="'model@version' or 'model' → target.")
    lease_ttl_s: float = Field(
        default=120.0, gt=0, description="A job's lease lives this long unless renewed; "
                                         "a killed worker's job passes to another after it.")
    device: str | None = Field(default=None, description="torch device; default cuda if present.")
    session_timeout_s: float = Field(
        default=45.0, ge=6.0, description="Kafka consumer session timeout: how soon the group "
                                          "hands a dead worker's partitions to another.")


class AlertsSettings(DriftscopeSettings):
    """The alert receiver: Alertmanager webhooks in, relayed to the configured webhooks."""

    receiver: AlertReceiverSettings | None = Field(
        default=None, description="Required by `alerts receive`: at least its credentials. "
        "`alerts dead-letters` needs only redis and webhooks.dead_letter_key.")
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    metrics: MetricsSettings = Field(default_factory=lambda: MetricsSettings(port=9467))
    max_queue: int = Field(default=1000, ge=1, description="Relayed notifications waiting.")


class IngestServiceSettings(DriftscopeSettings):
    """Settings of the ``driftscope ingest`` deployable (``DRIFTSCOPE_`` environment prefix)."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    metrics: MetricsSettings = Field(default_factory=lambda: MetricsSettings(port=9468))
    receiver: OtlpReceiverSettings = Field(default_factory=OtlpReceiverSettings)
    ingest: IngestSettings = Field(
        default_factory=IngestSettings,
        description="Mapping of spans to events (segment allow-list, version and logprob "
                    "attributes); see docs/ingestion.md.")
    max_event_bytes: int = Field(default=1_000_000, ge=1024)


class CliSettings(DriftscopeSettings):
    """The on-call commands (status, incidents, trace, attribute): what they read."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    prometheus_url: str = "http://127.0.0.1:19090"


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], path: Path | None = None) -> S:
    """Build ``cls`` from an optional YAML file, overridden by ``DRIFTSCOPE_*`` variables.

    Raises :class:`ConfigError` naming the file and the offending field.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist", path=str(path)) from None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"config file {path} is not valid YAML: {exc}", path=str(path)
            ) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping", path=str(path))
        data = loaded or {}
    unknown = _unknown_key(cls, data)
    if unknown is not None:
        raise ConfigError(f"unknown setting {unknown!r}{f' in {path}' if path else ''}",
                          path=str(path) if path else None, field=unknown)
    try:
        return cls(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"invalid setting {loc!r}{f' in {path}' if path else ''}: {first['msg']}",
            path=str(path) if path else None, field=loc,
        ) from None


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The settings model an annotation holds, and whether it is the values of a mapping
    (``dict[str, Model]``); ``(None, False)`` for plain values."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if get_origin(annotation) is dict:
        args = get_args(annotation)
        inner, _ = _model_in(args[1]) if len(args) == 2 else (None, False)
        return inner, inner is not None
    for arg in get_args(annotation):  # Optional[Model], Model | None
        inner, mapped = _model_in(arg)
        if inner is not None:
            return inner, mapped
    return None, False


def _unknown_key(model: type[BaseModel], data: Mapping[Any, Any],
                 prefix: tuple[str, ...] = ()) -> str | None:
    """The dotted path of the first key in ``data`` that ``model`` (or a nested settings model)
    does not define, or ``None``. Sub-models ignore unknown keys by default, so without this a
    typo such as ``kafka.bootstrap_server`` would silently keep the default."""
    if model.model_config.get("extra") == "allow":
        return None
    fields = {**{f.alias: f for f in model.model_fields.values() if f.alias},
              **model.model_fields}
    for key, value in data.items():
        info = fields.get(key)
        if info is None:
            return ".".join((*prefix, str(key)))
        sub, mapped = _model_in(info.annotation)
        if sub is None or not isinstance(value, Mapping):
            continue
        items = value.items() if mapped else [(None, value)]
        for name, item in items:
            if isinstance(item, Mapping):
                where = (*prefix, str(key)) if name is None else (*prefix, str(key), str(name))
                found = _unknown_key(sub, item, where)
                if found is not None:
                    return found
    return None
