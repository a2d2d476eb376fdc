"""How incoming records are read: which format each topic carries, and the mapping's knobs.

Every default works with no configuration: topics are auto-detected (an OutputEvent, an OpenAI
chat completion and an OTLP trace export can share one topic), the usual deployment labels become
segment labels, and the model version comes from ``gen_ai.response.model``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["FORMATS", "IngestSettings", "InputFormat", "RecordFormat"]

InputFormat = Literal["auto", "driftscope", "openai", "otlp_proto", "otlp_json"]
"""A topic's or file's format; ``auto`` detects each record's own (see :func:`detect_format`)."""

RecordFormat = Literal["driftscope", "openai", "otlp_proto", "otlp_json"]
"""A concrete format, as detected or configured."""

FORMATS: tuple[RecordFormat, ...] = ("driftscope", "openai", "otlp_proto", "otlp_json")


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
    max_message_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024,
        description="Largest OTLP message accepted (one message holds many spans).")

    def format_for(self, topic: str) -> InputFormat:
        """The configured format of ``topic``."""
        return self.topic_formats.get(topic, self.default_format)
