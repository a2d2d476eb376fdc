"""An app instrumented with the official OpenAI instrumentation, as a user sets it up: run as
``python -m tests.integration.openai_v2_app BASE_URL OTLP_BASE N FIRST`` with the instrumentation's
own environment variables (``OTEL_SEMCONV_STABILITY_OPT_IN``,
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``) set by the caller.

Traces and logs go through the SDK's OTLP/HTTP protobuf exporters with their batch processors
to ``OTLP_BASE/v1/traces`` and ``OTLP_BASE/v1/logs``. ``FIRST`` (``traces`` or ``logs``) is the
signal flushed first at the end, so a test can make either side of the join arrive first.
Prints one JSON line per call: the text, the usage and the trace/span ids the client saw."""

from __future__ import annotations

import json
import sys

from openai import OpenAI
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

PROMPTS = ["Name a colour.", "Say hello to Ana.", "What is two plus two?", "Name a fruit."]


def main(base_url: str, otlp: str, n: int, first: str) -> None:
    resource = Resource.create({"service.name": "support-app"})
    traces = TracerProvider(resource=resource)
    traces.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp}/v1/traces")))
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{otlp}/v1/logs")))
    OpenAIInstrumentor().instrument(tracer_provider=traces, logger_provider=logs)
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    for i in range(n):
        response = client.chat.completions.create(
            model="smollm2", max_tokens=8, temperature=0.0,
            messages=[{"role": "system", "content": "Answer in a few words."},
                      {"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
        print(json.dumps({"output": response.choices[0].message.content,
                          "prompt": PROMPTS[i % len(PROMPTS)],
                          "output_tokens": response.usage.completion_tokens if response.usage
                          else None,
                          "finish_reason": response.choices[0].finish_reason}), flush=True)
    for provider in ([traces, logs] if first == "traces" else [logs, traces]):
        assert provider.force_flush(30_000)
    traces.shutdown()
    logs.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
