"""Ingest what LLM stacks already emit: OpenAI-format responses and OpenTelemetry GenAI spans.

Pure conversion (bytes → OutputEvents plus per-item rejects with reasons); the collector, the
OTLP/HTTP receiver (:mod:`.receiver`), ``driftscope replay`` and the emitter (:mod:`.emitter`)
all go through :class:`RecordDecoder`. The mapping rules are written down in
``docs/ingestion.md``.
"""

from driftscope_llm.services.ingest.decode import IngestMetrics, RecordDecoder, detect_format
from driftscope_llm.services.ingest.openai_records import assemble_stream, events_from_openai
from driftscope_llm.services.ingest.results import Decoded, Reject
from driftscope_llm.services.ingest.settings import IngestSettings, InputFormat

__all__ = [
    "Decoded",
    "IngestMetrics",
    "IngestSettings",
    "InputFormat",
    "RecordDecoder",
    "Reject",
    "assemble_stream",
    "detect_format",
    "events_from_openai",
]
