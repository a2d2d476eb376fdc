"""OTLP GenAI spans → OutputEvents: golden fixtures (LiteLLM, OpenLLMetry, vLLM, current and
≤1.36 GenAI conventions) in both encodings, one test per mapping rule of docs/ingestion.md."""

from __future__ import annotations

import base64
import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from driftscope_llm.services.ingest import Decoded, IngestSettings, RecordDecoder, detect_format
from driftscope_llm.services.schemas import INVALID_REASONS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
T0_S = 1_780_000_000


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def to_proto(data: dict[str, Any]) -> bytes:
    """OTLP JSON → protobuf bytes, as the Collector's Kafka exporter writes ``otlp_proto``
    (OTLP JSON's hex ids become proto3-JSON base64 before parsing)."""
    d = copy.deepcopy(data)
    for rs in d["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId"):
                    span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return bytes(json_format.ParseDict(d, ExportTraceServiceRequest()).SerializeToString())


def decode_both(name: str, settings: IngestSettings | None = None) -> Decoded:
    """Decode a fixture as otlp_json and as otlp_proto; the two must agree exactly."""
    decoder = RecordDecoder(settings)
    data = fixture(name)
    as_json = decoder.decode_as("otlp_json", json.dumps(data).encode())
    as_proto = decoder.decode_as("otlp_proto", to_proto(data))
    assert [e.model_dump() for e in as_json.events] == [e.model_dump() for e in as_proto.events]
    assert as_json.skipped == as_proto.skipped
    assert [(r.reason, r.item) for r in as_json.rejects] == [
        (r.reason, r.item) for r in as_proto.rejects]
    return as_proto


def test_litellm_indexed_attributes() -> None:
    out = decode_both("litellm")
    [ev] = out.events
    assert out.skipped == {"not_genai": 1}
    assert ev.event_id == "5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174"
    assert (ev.model, ev.model_version) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert ev.output == "Your refund was issued on Monday."
    assert ev.prompt == "Where is my refund?"  # last user turn of gen_ai.prompt.{i}
    assert ev.finish_reason == "stop"  # gen_ai.completion.0.finish_reason
    assert ev.latency_ms == pytest.approx(640.0)  # end - start
    assert ev.segment == {"service.name": "litellm-proxy", "deployment.environment": "prod"}
    assert ev.metadata is not None
    assert ev.metadata["usage"] == {"input_tokens": 21, "output_tokens": 8}  # older names
    assert ev.metadata["provider"] == "openai" and ev.metadata["operation"] == "acompletion"


def test_openllmetry_skips_embeddings_and_workflow_spans() -> None:
    out = decode_both("openllmetry")
    [ev] = out.events
    assert out.skipped == {"not_generation": 1, "not_genai": 1}
    assert ev.model == "gpt-3.5-turbo" and ev.model_version == "gpt-3.5-turbo-0125"
    assert ev.output.startswith("Why did the span go to therapy?")
    assert ev.prompt == "Tell me a joke about OpenTelemetry"
    assert ev.metadata is not None and ev.metadata["span_name"] == "openai.chat"


def test_vllm_spans_without_content_are_skipped_by_default() -> None:
    out = decode_both("vllm")
    assert not out.events and not out.rejects
    assert out.skipped == {"no_content": 1}


def test_vllm_spans_kept_without_content_take_latency_from_e2e() -> None:
    out = decode_both("vllm", IngestSettings(keep_contentless=True))
    [ev] = out.events
    assert ev.output == ""
    assert ev.model == ev.model_version == "meta-llama/Llama-3.1-8B-Instruct"  # response model
    assert ev.latency_ms == pytest.approx(1250.0)  # gen_ai.latency.e2e, not the span's 1300
    assert ev.metadata is not None
    assert ev.metadata["usage"] == {"input_tokens": 34, "output_tokens": 120}


def test_latest_conventions_messages_parts_finish_reasons_and_logprobs() -> None:
    out = decode_both("semconv_latest")
    first, second = out.events
    assert first.output == "The second charge is a pending authorisation."  # text parts joined
    assert first.prompt == "Why was I charged twice?"
    assert first.finish_reason == "stop"
    assert first.token_logprobs == [-0.02, -0.3]
    assert first.top_logprobs == [{"The": -0.02, "A": -4.1}, {" second": -0.3, " first": -1.4}]
    assert first.segment == {"service.name": "billing-api",
                             "deployment.environment.name": "staging"}
    assert first.metadata is not None
    assert first.metadata["usage"] == {"input_tokens": 25, "output_tokens": 9}
    assert first.metadata["response_id"] == "chatcmpl-new1"
    # content on the gen_ai.client.inference.operation.details event
    assert (second.output, second.prompt) == ("Your bill is", "Summarise my bill.")
    assert second.finish_reason == "length"
    assert out.skipped == {"not_generation": 1, "not_genai": 1}  # the tool span, the HTTP span
    [reject] = out.rejects  # a chat span with content but no model
    assert reject.reason == "missing_model"
    assert reject.item == "span 5b8efff798038103d269b633813fc60c:aaaaaaaaaaaa0005"
    assert reject.raw  # the span alone, for the dead letter


def test_conventions_up_to_1_36_content_events() -> None:
    [ev] = decode_both("semconv_1_27_events").events
    assert ev.output == "Yes, it shipped today."
    assert ev.prompt == "Is my order shipped?"
    assert ev.ts.timestamp() == pytest.approx(T0_S + 0.95)  # span end
    assert ev.segment == {"service.name": "legacy-bot"}


def test_segment_allow_list_and_version_attribute_are_configurable() -> None:
    settings = IngestSettings(segment_attributes=["route"], version_attribute="service.name")
    first = decode_both("semconv_latest", settings).events[0]
    assert first.segment == {"route": "billing"}
    assert first.model_version == "billing-api"  # from the resource


def test_logprobs_attribute_name_is_configurable_and_bad_values_reject_the_span() -> None:
    data = fixture("semconv_latest")
    span = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    for kv in span["attributes"]:
        if kv["key"] == "gen_ai.response.logprobs":
            kv["key"] = "acme.logprobs"
            kv["value"] = {"arrayValue": {"values": [{"doubleValue": -0.5},
                                                     {"doubleValue": -1.0}]}}
    raw = json.dumps(data).encode()
    assert RecordDecoder().decode_as("otlp_json", raw).events[0].token_logprobs is None
    custom = RecordDecoder(IngestSettings(logprobs_attributes=["acme.logprobs"]))
    assert custom.decode_as("otlp_json", raw).events[0].token_logprobs == [-0.5, -1.0]
    for kv in span["attributes"]:
        if kv["key"] == "acme.logprobs":
            kv["value"] = {"stringValue": "not json"}
    out = custom.decode_as("otlp_json", json.dumps(data).encode())
    assert [r.reason for r in out.rejects] == ["wrong_type", "missing_model"]
    assert len(out.events) == 1  # the other spans of the message are kept


def test_truncated_protobuf_is_one_reject_without_item() -> None:
    raw = to_proto(fixture("semconv_latest"))
    out = RecordDecoder().decode_as("otlp_proto", raw[: len(raw) // 2])
    assert not out.events
    [reject] = out.rejects
    assert reject.reason == "otlp_invalid" and reject.item is None


def test_json_without_resource_spans_is_rejected_when_the_topic_says_otlp_json() -> None:
    out = RecordDecoder().decode_as("otlp_json", b'{"spans": []}')
    assert [r.reason for r in out.rejects] == ["otlp_invalid"]


def test_oversized_message_is_rejected() -> None:
    raw = to_proto(fixture("semconv_latest"))
    out = RecordDecoder(IngestSettings(max_message_bytes=1024)).decode_as("otlp_proto",
                                                                           raw * 4)
    assert [r.reason for r in out.rejects] == ["too_large"]


def test_deep_kvlist_rejects_the_span_not_the_message() -> None:
    data = fixture("semconv_latest")
    value: dict[str, Any] = {"stringValue": "x"}
    for _ in range(20):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    spans = data["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[1]["attributes"].append({"key": "deep", "value": value})
    out = RecordDecoder().decode_as("otlp_proto", to_proto(data))
    assert len(out.events) == 1
    assert sorted(r.reason for r in out.rejects) == ["missing_model", "too_deep"]
    # in JSON too (issue 28: the OutputEvent depth bound refused the whole request)
    as_json = RecordDecoder().decode_as("otlp_json", json.dumps(data).encode())
    assert len(as_json.events) == 1
    assert sorted(r.reason for r in as_json.rejects) == ["missing_model", "too_deep"]
    assert next(r.item for r in as_json.rejects if r.reason == "too_deep") is not None


def test_json_nested_past_the_otlp_json_bound_is_refused_whole_before_parsing() -> None:
    data = fixture("semconv_latest")
    value: dict[str, Any] = {"stringValue": "x"}
    for _ in range(40):  # 40 x 4 JSON levels: past OTLP_JSON_DEPTH
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["attributes"].append(
        {"key": "deep", "value": value})
    out = RecordDecoder().decode_as("otlp_json", json.dumps(data).encode())
    assert [(r.reason, r.item) for r in out.rejects] == [("too_deep", None)]
    assert not out.events


@pytest.mark.parametrize(("raw", "fmt"), [
    (b'{"event_id": "1"}', "driftscope"),
    (b'  {"resourceSpans": []}', "otlp_json"),
    (b'{"id": "x", "choices": []}', "openai"),
    (b"\x0a\x00", "otlp_proto"),
    (b"this is not json", "driftscope"),
    (b"\x00\xff\xfe", "driftscope"),
])
def test_format_detection(raw: bytes, fmt: str) -> None:
    assert detect_format(raw) == fmt


def test_auto_detection_falls_back_to_output_event_when_the_sniff_was_wrong() -> None:
    event = {"event_id": "e1", "ts": "2026-05-01T00:00:00Z", "model": "m", "output": "choices"}
    out = RecordDecoder().decode_as("auto", json.dumps(event).encode())
    assert out.format == "driftscope" and [e.output for e in out.events] == ["choices"]


def test_every_item_is_accounted_for_exactly_once() -> None:
    for name in ("litellm", "openllmetry", "vllm", "semconv_latest", "semconv_1_27_events"):
        data = fixture(name)
        n_spans = sum(len(ss["spans"]) for rs in data["resourceSpans"]
                      for ss in rs["scopeSpans"])
        out = decode_both(name)
        assert out.items == n_spans
        assert all(r.reason in INVALID_REASONS for r in out.rejects)  # pre-registered metrics


def test_gzip_is_not_the_decoder_s_business() -> None:
    # the receiver decompresses; a gzip body given to the decoder is just not OTLP
    out = RecordDecoder().decode_as("otlp_proto", gzip.compress(b"x"))
    assert out.rejects and out.rejects[0].reason == "otlp_invalid"


def test_topic_formats_name_each_topic_s_format() -> None:
    settings = IngestSettings(topic_formats={"otel.traces": "otlp_proto"},
                              default_format="driftscope")
    decoder = RecordDecoder(settings)
    event = {"event_id": "e1", "ts": "2026-05-01T00:00:00Z", "model": "m", "output": "o"}
    raw_event = json.dumps(event).encode()
    raw_otlp = to_proto(fixture("semconv_1_27_events"))
    assert [e.event_id for e in decoder.decode("llm.outputs", raw_event).events] == ["e1"]
    assert len(decoder.decode("otel.traces", raw_otlp).events) == 1
    # a record in the wrong format for its topic is rejected with a reason, not guessed
    assert [r.reason for r in decoder.decode("otel.traces", raw_event).rejects] == [
        "otlp_invalid"]
    assert [r.reason for r in decoder.decode("llm.outputs", raw_otlp).rejects] == ["not_json"]


def test_the_package_exports_exactly_its_public_surface() -> None:
    import driftscope_llm.services.ingest as ingest

    assert sorted(ingest.__all__) == [
        "Decoded", "IngestMetrics", "IngestSettings", "InputFormat", "RecordDecoder", "Reject",
        "assemble_stream", "detect_format", "events_from_openai"]
    assert all(hasattr(ingest, name) for name in ingest.__all__)
