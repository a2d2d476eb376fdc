"""How incoming records are read: which format each topic carries, and the mapping's knobs.

Every default works with no configuration: topics are auto-detected (an OutputEvent, an OpenAI
chat completion and an OTLP trace export can share one topic), the usual deployment labels become
segment labels, and the model version comes from ``gen_ai.response.model``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["FORMATS", "ContentJoinSettings", "IngestSettings", "InputFormat", "RecordFormat"]

InputFormat = Literal["auto", "driftscope", "openai", "otlp_proto", "otlp_json"]
"""A topic's or file's format; ``auto`` detects each record's own (see :func:`detect_format`)."""

RecordFormat = Literal["driftscope", "openai", "otlp_proto", "otlp_json"]
"""A concrete format, as detected or configured."""

FORMATS: tuple[RecordFormat, ...] = ("driftscope", "openai", "otlp_proto", "otlp_json")


class ContentJoinSettings(BaseModel):
    """How long and how much the receiver and the collector hold while joining GenAI content
    log records to their spans (:class:`~driftscope_llm.services.ingest.content_join.ContentJoin`).
    """

    wait_s: float = Field(
        default=15.0, gt=0,
        description="How long a generation span without content waits for its content log "
                    "record, and a content record for its span (the OTel SDK exports spans "
                    "every 5 s and logs every 1 s by default).")
    max_pending_spans: int = Field(
        default=10_000, ge=1,
        description="Spans held at once; past it the oldest is settled without content "
                    "(no_content, or an empty-output event with keep_contentless).")
    max_pending_content_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024,
        description="Encoded size of the content records held at once; past it the oldest are "
                    "dropped (counted in driftscope_ingest_join_total{outcome='evicted'}).")
    remember_spans: int = Field(
        default=50_000, ge=0,
        description="Ids of spans already turned into events that are remembered, so a content "
                    "record arriving after its span (span_and_event) is known as redundant.")


class IngestSettings(BaseModel):
    """Settings of the conversion from what LLM stacks emit to OutputEvents.

    Saved nowhere: the mapping is stateless, so changing these affects only records read later.
    """

    default_format: InputFormat = Field(
        default="auto", description="Format of a topic not named in topic_formats.")
    topic_formats: dict[str, InputFormat] = Field(
        default_factory=dict,
        description="Per-topic format, e.g. {'otel.traces': 'otlp_proto'}; others use "
                    "default_format.")
    segment_attributes: list[str] = Field(
        default_factory=lambda: ["service.name", "deployment.environment.name",
                                 "deployment.environment", "gen_ai.agent.name"],
        description="Span attributes, then resource attributes, copied into the event's "
                    "segment labels (allow-list; nothing else becomes a label).")
    version_attribute: str | None = Field(
        default=None,
        description="Span or resource attribute holding the model version; default: "
                    "gen_ai.response.model.")
    logprobs_attributes: list[str] = Field(
        default_factory=lambda: ["gen_ai.response.logprobs", "llm.response.logprobs"],
        description="Span attributes that may carry token logprobs (no standard one exists): a "
                    "float array, or a JSON string of floats, of OpenAI logprobs.content items "
                    "or of {'content': [...]}. The first one present is used.")
    generation_operations: list[str] = Field(
        default_factory=lambda: ["chat", "text_completion", "completion", "generate_content",
                                 "acompletion"],
        description="gen_ai.operation.name (or llm.request.type) values that are generations; "
                    "GenAI spans of other operations (embeddings, tools, agents) are skipped.")
    keep_contentless: bool = Field(
        default=False,
        description="Turn GenAI spans without output content (content capture off, vLLM) into "
                    "events with an empty output, so latency and finish reasons are still "
                    "watched; off: such spans are skipped and counted as no_content.")
    content_join: ContentJoinSettings = Field(
        default_factory=ContentJoinSettings,
        description="Joining content log records (/v1/logs, OTLP log exports on Kafka) to their "
                    "spans.")
    max_message_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024,
        description="Largest OTLP message accepted (one message holds many spans).")

    def format_for(self, topic: str) -> InputFormat:
        """The configured format of ``topic``."""
        return self.topic_formats.get(topic, self.default_format)
