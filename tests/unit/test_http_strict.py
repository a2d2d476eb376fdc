"""Strict HTTP framing and per-span limits in the receivers (issue 28, failure 6).

On 44e8acf ``Content-Length: ²`` passed ``str.isdigit()`` and crashed ``int()`` in the OTLP
receiver, the alert receiver and the signature parser (no response, a traceback); two
conflicting Content-Length headers were accepted; a span ending at 1e24 ns raised ``ValueError:
year out of range`` out of the decoder, taking its sibling spans with it; ``replay`` exited 0
when no line could be read. The receivers run here on loopback with a recording sink (delivery
to the real broker: ``tests/integration/test_receiver_hardening.py``).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Sequence
from email.message import Message
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from driftscope_llm.services.alerts.errors import SignatureError
from driftscope_llm.services.alerts.receiver import AlertReceiver
from driftscope_llm.services.alerts.settings import AlertReceiverSettings
from driftscope_llm.services.alerts.signing import verify
from driftscope_llm.services.cli.main import app
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from driftscope_llm.services.http_server import RequestRefused, content_length
from driftscope_llm.services.ingest import RecordDecoder
from driftscope_llm.services.otlp_receiver.server import OtlpReceiver
from driftscope_llm.services.otlp_receiver.settings import OtlpReceiverSettings
from driftscope_llm.services.schemas import DeadLetter, OutputEvent
from tests.fixtures.ingest.spans import export_request, genai_span, to_otlp_json

SECRET = SecretStr("a-signing-secret-of-some-length")


def headers(*pairs: tuple[str, str]) -> Message:
    m = Message()
    for name, value in pairs:
        m[name] = value
    return m


@pytest.mark.parametrize(("pairs", "status"), [
    ((("Content-Length", "²"),), 400),          # a Unicode digit: isdigit() is True
    ((("Content-Length", "١٢"),), 400),         # Arabic-Indic digits
    ((("Content-Length", "+12"),), 400),
    ((("Content-Length", "0x10"),), 400),
    ((("Content-Length", "1" * 19),), 400),     # longer than any body, past int()'s comfort
    ((("Content-Length", "5"), ("Content-Length", "6")), 400),
    ((("Content-Length", "5, 6"),), 400),
    ((), 411),
    ((("Transfer-Encoding", "chunked"),), 411),
    ((("Transfer-Encoding", "chunked"), ("Content-Length", "5")), 411),
])
def test_malformed_content_length_is_refused_with_a_status(
        pairs: tuple[tuple[str, str], ...], status: int) -> None:
    with pytest.raises(RequestRefused) as err:
        content_length(headers(*pairs))
    assert err.value.status == status


@pytest.mark.parametrize(("pairs", "length"), [
    ((("Content-Length", "12"),), 12),
    ((("Content-Length", " 7 "),), 7),
    ((("Content-Length", "5"), ("Content-Length", "5")), 5),  # identical repeats: one value
    ((("Content-Length", "5, 5"),), 5),
    ((("Content-Length", "0"),), 0),
])
def test_valid_content_length(pairs: tuple[tuple[str, str], ...], length: int) -> None:
    assert content_length(headers(*pairs)) == length


@pytest.mark.parametrize("t", ["²", "١٧١٧٢٤٣٢٠٠", "1717243200²"])
def test_signature_with_a_unicode_digit_timestamp_is_malformed(t: str) -> None:
    with pytest.raises(SignatureError) as err:
        verify(b"{}", f"t={t},v1=00", SECRET, now=1717243200)
    assert err.value.reason == "malformed"


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[OutputEvent] = []
        self.letters: list[DeadLetter] = []

    def send(self, events: Sequence[OutputEvent], rejects: Sequence[DeadLetter]) -> None:
        self.events.extend(events)
        self.letters.extend(rejects)


@pytest.fixture
def otlp() -> Iterator[tuple[OtlpReceiver, RecordingSink]]:
    sink = RecordingSink()
    rx = OtlpReceiver(OtlpReceiverSettings(port=0), RecordDecoder(), sink).start()
    yield rx, sink
    rx.stop()


@pytest.fixture
def alerts() -> Iterator[AlertReceiver]:
    settings = AlertReceiverSettings(port=0, bearer_token=SecretStr("a-bearer-token-long"))
    with AlertReceiver(settings, lambda message: None) as rx:
        yield rx


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` as is; everything the server answers before closing (or 5 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split(b" ", 2)[1])


def one_span() -> bytes:
    event = next(iter(generate_events(StreamSpec(n=1, seed=5))))
    return bytes(export_request([genai_span(event)]).SerializeToString())


@pytest.mark.parametrize(("lengths", "status"), [
    ([b"\xc2\xb2"], 400),           # "²" in UTF-8; http.server decodes headers as latin-1
    ([b"\xb2"], 400),               # "²" in latin-1
    ([b"{n}", b"{n1}"], 400),       # two lengths that disagree: which body is the request?
])
def test_otlp_receiver_answers_bad_lengths(otlp: tuple[OtlpReceiver, RecordingSink],
                                           lengths: list[bytes], status: int) -> None:
    rx, sink = otlp
    body = one_span()
    n = str(len(body)).encode()
    lengths = [v.replace(b"{n}", n).replace(b"{n1}", n + b"1") for v in lengths]
    head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
    head += b"".join(b"Content-Length: " + v + b"\r\n" for v in lengths)
    answer = raw_exchange(rx.port, head + b"\r\n" + body)
    assert status_of(answer) == status
    assert sink.events == []
    assert rx.metrics.requests.labels(str(status))._value.get() == 1


AM_MESSAGE = json.dumps({"version": "4", "groupKey": "g", "status": "firing",
                         "receiver": "driftscope", "alerts": []}).encode()


@pytest.mark.parametrize(("lengths", "status"), [
    ([b"\xc2\xb2"], 400),
    ([b"\xb2"], 400),
    ([b"{n}", b"{n1}"], 400),
])
def test_alert_receiver_answers_bad_lengths(alerts: AlertReceiver, lengths: list[bytes],
                                            status: int) -> None:
    n = str(len(AM_MESSAGE)).encode()
    lengths = [v.replace(b"{n}", n).replace(b"{n1}", n + b"1") for v in lengths]
    head = (b"POST /alertmanager HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer a-bearer-token-long\r\n")
    head += b"".join(b"Content-Length: " + v + b"\r\n" for v in lengths)
    answer = raw_exchange(alerts.port, head + b"\r\n" + AM_MESSAGE)
    assert status_of(answer) == status
    assert alerts.accepted == 0


def _json_spans(end_ns: list[int | str]) -> bytes:
    events = list(generate_events(StreamSpec(n=len(end_ns), seed=8)))
    data = json.loads(to_otlp_json(export_request([genai_span(e) for e in events])))
    for span, end in zip(data["resourceSpans"][0]["scopeSpans"][0]["spans"], end_ns,
                         strict=True):
        span["endTimeUnixNano"] = end
    return json.dumps(data).encode()


@pytest.mark.parametrize("end", [10**24, "1000000000000000000000000", 2**63 * 10**3])
def test_out_of_range_span_time_rejects_that_span_alone(end: int | str) -> None:
    ok = 1_780_000_000 * 10**9
    out = RecordDecoder().decode_as("otlp_json", _json_spans([ok, end, ok]))
    assert len(out.events) == 2
    assert [(r.reason, r.item is not None) for r in out.rejects] == [("invalid_value", True)]
    assert "out of range" in out.rejects[0].detail


def test_out_of_range_span_is_a_partial_success_at_the_receiver(
        otlp: tuple[OtlpReceiver, RecordingSink]) -> None:
    rx, sink = otlp
    body = _json_spans([1_780_000_000 * 10**9, 10**24])
    request = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    answer = raw_exchange(rx.port, request)
    assert status_of(answer) == 200
    reply = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert reply["partialSuccess"]["rejectedSpans"] == "1"
    assert len(sink.events) == 1 and [d.reason for d in sink.letters] == ["invalid_value"]


def test_replay_of_a_file_with_no_valid_line_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"not json\n{\"event_id\": 1}\n1e999\n")
    result = CliRunner().invoke(app, ["replay", str(path), "--no-embed"])
    assert result.exit_code == 2, result.output
    assert "3 invalid lines" in result.stderr


def test_replay_with_one_valid_line_among_invalid_ones_exits_0(tmp_path: Path) -> None:
    event = next(iter(generate_events(StreamSpec(n=1, seed=2))))
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"not json\n" + json.dumps(event).encode() + b"\n")
    result = CliRunner().invoke(app, ["replay", str(path), "--no-embed"])
    assert result.exit_code == 0, result.output
