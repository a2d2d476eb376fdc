"""``driftscope replay --format`` through the real app: OTLP JSON exports and OpenAI records
replay like OutputEvents (same anomalies), formats are auto-detected per line, and the human
output says what was skipped and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openai.types.chat import ChatCompletion
from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from tests.fixtures.ingest.spans import export_request, genai_span, http_span, to_otlp_json


def events() -> list[dict[str, Any]]:
    """v2 refuses half of its answers from its first event: caught on defaults against v1."""
    return [*generate_events(StreamSpec(n=800, seed=1)),
            *generate_events(StreamSpec(n=800, seed=2, model_version="v2", prefix="b", drifts=(
                Drift(start=0, route=None, refusal_rate=0.5),)))]


def as_openai(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a wrapped OpenAI record built with the openai package's own type."""
    response = ChatCompletion.model_validate({
        "id": event["event_id"], "object": "chat.completion", "created": 1_780_000_000,
        "model": event["model_version"],
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": {"content": [
            {"token": "t", "logprob": lp, "bytes": None, "top_logprobs": []}
            for lp in event["token_logprobs"]]},
            "message": {"role": "assistant", "content": event["output"]}}]})
    return {"response": response.model_dump(mode="json"), "ts": event["ts"],
            "request": {"model": event["model"],
                        "messages": [{"role": "user", "content": event["prompt"]}]},
            "latency_ms": event["latency_ms"], "segment": event["segment"]}


def replay(path: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["replay", str(path), "--no-embed", *args])
    assert result.exit_code == 0, result.output
    return result


def signature(stdout: str) -> list[tuple[str, str, str]]:
    return [(a["event_id"], a["signal"], a["detector"])
            for a in map(json.loads, stdout.splitlines())]


def test_otlp_json_file_catches_planted_drift_on_defaults(tmp_path: Path) -> None:
    evs = events()
    otlp = tmp_path / "traces.jsonl"  # one export of 8 spans (+1 HTTP span) per line
    with otlp.open("wb") as f:
        for i in range(0, len(evs), 8):
            spans = [genai_span(e) for e in evs[i:i + 8]] + [http_span(i)]
            f.write(to_otlp_json(export_request(spans)) + b"\n")
    result = replay(otlp, "--json", "--format", "otlp_json")
    anomalies = [json.loads(line) for line in result.stdout.splitlines()]
    refusal = [a for a in anomalies if a["signal"] == "refusal"]
    assert refusal, f"no refusal anomaly: {[(a['signal'], a['detector']) for a in anomalies]}"
    assert {a["model_version"] for a in refusal} == {"v2"}
    trace_span = refusal[0]["event_id"].split(":")
    assert [len(part) for part in trace_span] == [32, 16]  # span events keep trace:span ids
    assert f"{len(evs) // 8} spans skipped: {{'not_genai': {len(evs) // 8}}}" in result.stderr


def test_each_format_yields_the_same_events_as_the_output_event_lines() -> None:
    from driftscope_llm.services.ingest import IngestSettings, RecordDecoder

    # "route" is a span attribute here: allow-list it so spans carry it as a segment label
    decoder = RecordDecoder(IngestSettings(segment_attributes=["route"]))
    for e in events()[:50]:
        plain = decoder.decode_as("auto", json.dumps(e).encode()).events[0]
        chat = decoder.decode_as("auto", json.dumps(as_openai(e)).encode()).events[0]
        span = decoder.decode_as("auto", to_otlp_json(export_request([genai_span(e)]))).events[0]
        for ev in (chat, span):
            assert (ev.model, ev.model_version, ev.output, ev.prompt) == (
                plain.model, plain.model_version, plain.output, plain.prompt)
            assert ev.token_logprobs == plain.token_logprobs
            assert ev.ts == plain.ts and ev.segment.get("route") == plain.segment["route"]
        assert chat.latency_ms == plain.latency_ms
        assert span.latency_ms is not None and plain.latency_ms is not None
        assert abs(span.latency_ms - plain.latency_ms) < 1e-3  # nanosecond span times


def test_mixed_file_is_detected_line_by_line_and_human_summary_counts(tmp_path: Path) -> None:
    evs = list(generate_events(StreamSpec(n=300, seed=4)))
    mixed = tmp_path / "mixed.jsonl"
    lines = []
    for i, e in enumerate(evs):
        kind = i % 3
        if kind == 0:
            lines.append(json.dumps(e).encode())
        elif kind == 1:
            lines.append(json.dumps(as_openai(e)).encode())
        else:
            lines.append(to_otlp_json(export_request([genai_span(e), http_span(i)])))
    mixed.write_bytes(b"\n".join(lines) + b"\n")
    human = replay(mixed)
    assert "300 valid events replayed, 0 invalid" in human.stdout
    assert "100 spans skipped: {'not_genai': 100}" in human.stderr

    forced = replay(mixed, "--format", "openai")
    # only the OpenAI lines map; the others are rejected with a reason, never dropped silently
    assert "100 valid events replayed, 200 invalid" in forced.stdout
    assert "invalid event skipped" in forced.stderr


def test_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("{}\n")
    result = CliRunner().invoke(app, ["replay", str(path), "--format", "otlp_proto"])
    assert result.exit_code == 2
    assert "otlp_proto" in result.output and "Traceback" not in result.output
