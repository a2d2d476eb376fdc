"""Poison messages found by probing (issue 19): each is refused with a reason, bounded in time,
and nothing else about the message decides whether the collector survives it.

Every case here failed on ec31e46: the deep message and the long integer raised RecursionError /
ValueError out of ``parse_output_event`` (the collector exited), the lone surrogate was accepted
(and later broke the checkpoint write), ``1e999`` was ``not_object`` and positive
``top_logprobs`` were accepted.
"""

from __future__ import annotations

import json
import time

import pytest

from driftscope_llm.services.errors import InvalidEventError
from driftscope_llm.services.schemas import (
    INVALID_REASONS,
    MAX_INT_DIGITS,
    MAX_JSON_DEPTH,
    loads_bounded,
    parse_output_event,
)

GOOD = {"event_id": "e1", "ts": "2026-11-28T10:00:00Z", "model": "m", "output": "hi"}


def _with(tail: bytes) -> bytes:
    """GOOD with ``tail`` (raw JSON: ``"key": value``) appended as one more member."""
    return json.dumps(GOOD).encode()[:-1] + b", " + tail + b"}"


def _reason(raw: bytes) -> str:
    with pytest.raises(InvalidEventError) as info:
        parse_output_event(raw)
    assert info.value.reason in INVALID_REASONS
    return info.value.reason


def test_five_thousand_levels_in_metadata_are_too_deep_without_decoding() -> None:
    raw = _with(b'"metadata": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert len(raw) < 11_000
    assert _reason(raw) == "too_deep"


def test_depth_limit_is_exact_and_ignores_brackets_inside_strings() -> None:
    def nested(depth: int) -> bytes:  # the event object itself is one level
        return _with(b'"metadata": ' + b'{"a": ' * (depth - 1) + b"1" + b"}" * (depth - 1))

    assert parse_output_event(nested(MAX_JSON_DEPTH)).metadata is not None
    assert _reason(nested(MAX_JSON_DEPTH + 1)) == "too_deep"
    brackets = "[{" * 5000 + '"\\"[[[' + "]" * 3
    assert parse_output_event(json.dumps({**GOOD, "output": brackets}).encode()).output == brackets


def test_deep_arrays_of_many_brackets_that_stay_shallow_are_fine() -> None:
    event = {**GOOD, "top_logprobs": [{"a": -0.1, "b": -2.0}] * 2000}
    assert len(parse_output_event(json.dumps(event).encode()).top_logprobs or []) == 2000


def test_a_five_thousand_digit_integer_is_too_large_and_refused_quickly() -> None:
    raw = _with(b'"latency_ms": ' + b"9" * 5000)
    started = time.perf_counter()
    assert _reason(raw) == "too_large"
    assert time.perf_counter() - started < 1.0
    assert _reason(_with(b'"metadata": {"n": -' + b"1" * (MAX_INT_DIGITS + 1) + b"}")) \
        == "too_large"
    ok = parse_output_event(_with(b'"metadata": {"n": ' + b"7" * MAX_INT_DIGITS + b"}"))
    assert ok.metadata == {"n": int("7" * MAX_INT_DIGITS)}


def test_long_digit_runs_inside_strings_are_text() -> None:
    digits = "1" * 5000
    assert parse_output_event(json.dumps({**GOOD, "output": digits}).encode()).output == digits


@pytest.mark.parametrize("raw", [
    json.dumps({**GOOD, "output": "\ud800"}).encode(),  # escaped: "\\ud800"
    json.dumps({**GOOD, "prompt": "ok \udfff tail"}).encode(),
    json.dumps({**GOOD, "segment": {"route": "\udc00"}}).encode(),
    json.dumps({**GOOD, "metadata": {"\ud834": 1}}).encode(),  # in a key
    _with(b'"output2": "\xed\xa0\x80"'),  # the raw (CESU) bytes of a surrogate
])
def test_lone_surrogates_are_invalid_text_at_validation(raw: bytes) -> None:
    assert _reason(raw) == "invalid_text"


def test_surrogate_pairs_and_escaped_backslashes_are_ordinary_text() -> None:
    ev = parse_output_event(json.dumps({**GOOD, "output": "smile \U0001F600"}).encode())
    assert ev.output == "smile \U0001F600"
    literal = "a literal \\ud800 is six characters"
    assert parse_output_event(json.dumps({**GOOD, "output": literal}).encode()).output == literal


@pytest.mark.parametrize("raw", [b"1e999", b"-1e999", _with(b'"latency_ms": 1e999'),
                                 _with(b'"metadata": {"x": [1E+400]}')])
def test_floats_that_overflow_are_non_finite(raw: bytes) -> None:
    assert _reason(raw) == "non_finite"


def test_large_but_finite_exponents_are_numbers() -> None:
    ev = parse_output_event(_with(b'"latency_ms": 1e300, "metadata": {"tiny": 1e-999}'))
    assert ev.latency_ms == 1e300 and ev.metadata == {"tiny": 0.0}


def test_positive_top_logprobs_are_invalid_values() -> None:
    assert _reason(json.dumps({**GOOD, "top_logprobs": [{"a": -0.1}, {"b": 0.7}]}).encode()) \
        == "invalid_value"
    ok = parse_output_event(json.dumps({**GOOD, "top_logprobs": [{"a": 0.0, "b": -3.0}]}).encode())
    assert ok.top_logprobs == [{"a": 0.0, "b": -3.0}]


def test_loads_bounded_takes_text_and_bytes_and_refuses_the_same() -> None:
    assert loads_bounded('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    with pytest.raises(InvalidEventError, match="too_deep"):
        loads_bounded("[" * 100 + "]" * 100)
    with pytest.raises(InvalidEventError, match="not_json"):
        loads_bounded(b"{")


def test_a_deep_json_string_inside_an_otlp_span_is_refused_not_raised() -> None:
    """GenAI spans carry logprobs as a JSON *string* attribute, parsed a second time: that parse
    is bounded too, so the span is rejected with a reason instead of raising RecursionError out
    of the decoder (and out of ``driftscope ingest``'s request handler)."""
    from pathlib import Path

    from driftscope_llm.services.ingest import RecordDecoder

    data = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
                       / "litellm.json").read_text())
    span = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["attributes"].append({"key": "gen_ai.response.logprobs",
                               "value": {"stringValue": "[" * 5000 + "]" * 5000}})
    out = RecordDecoder().decode_as("otlp_json", json.dumps(data).encode())
    assert out.events == [] and [r.reason for r in out.rejects] == ["wrong_type"]


@pytest.mark.parametrize("over", [
    {"segment": {f"label{i}": "v" for i in range(17)}},
    {"segment": {"r" * 65: "a"}},
    {"segment": {"route": "a" * 257}},
    {"finish_reason": "stop" * 17},
])
def test_what_becomes_a_stream_key_or_category_is_bounded(over: dict[str, object]) -> None:
    """Segment labels become stream keys and finish reasons a categorical signal's values: a
    megabyte-long label or reason would be held in every window and checkpoint."""
    assert _reason(json.dumps({**GOOD, **over}).encode()) == "invalid_value"
