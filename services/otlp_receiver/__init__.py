"""The OTLP/HTTP receiver: OpenTelemetry trace exports in, OutputEvents on Kafka out.

A long-running component (layer 5 in ``docs/architecture.md``): it is given a decoder (the pure
mapping in :mod:`driftscope_llm.services.ingest`) and a sink (a Kafka producer from the entry
point), and serves ``POST /v1/traces``; ``driftscope ingest`` runs it. The server and its sinks
live in :mod:`.server` (which loads protobuf); this package exports only the settings.
"""

from driftscope_llm.services.otlp_receiver.settings import OtlpReceiverSettings

__all__ = ["OtlpReceiverSettings"]
