"""Event validation: every way a message can be wrong maps to one machine-readable reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftscope_llm.services.errors import InvalidEventError
from driftscope_llm.services.schemas import INVALID_REASONS, parse_output_event

GOOD = {"event_id": "e1", "ts": "2026-11-28T10:00:00Z", "model": "m", "output": "hi"}


def _raw(**over: object) -> bytes:
    return json.dumps({**GOOD, **over}).encode()


def test_minimal_event_is_valid_and_keeps_unknown_fields() -> None:
    ev = parse_output_event(_raw(extra_field={"a": 1}))
    assert ev.model_version == "unversioned"
    assert ev.model_extra == {"extra_field": {"a": 1}}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json at all", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'"just a string"', "not_object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "output"}).encode(), "missing_field"),
        (_raw(model=5), "wrong_type"),
        (_raw(ts="yesterday"), "wrong_type"),
        (_raw(token_logprobs=["a"]), "wrong_type"),
        (
            b'{"event_id":"e","ts":"2026-11-28T10:00:00Z","model":"m","output":"x",'
            b'"token_logprobs":[-0.1,NaN]}',
            "non_finite",
        ),
        (
            b'{"event_id":"e","ts":"2026-11-28T10:00:00Z","model":"m","output":"x",'
            b'"token_logprobs":[-Infinity]}',
            "non_finite",
        ),
        (_raw(token_logprobs=[0.5]), "invalid_value"),
        (_raw(confidence=1.5), "invalid_value"),
        (_raw(event_id=""), "invalid_value"),
        (_raw(output="x" * 2000), "too_large"),
    ],
)
def test_invalid_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_output_event(raw, max_bytes=1500)
    assert info.value.reason == reason
    assert info.value.reason in INVALID_REASONS


RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@RELAXED
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    try:
        parse_output_event(raw)
    except InvalidEventError as exc:
        assert exc.reason in INVALID_REASONS


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "ts",
                "model",
                "output",
                "confidence",
                "token_logprobs",
                "segment",
                "latency_ms",
            ]
        ),
        st.one_of(
            st.none(),
            st.integers(),
            st.floats(),
            st.text(max_size=5),
            st.lists(st.floats(), max_size=3),
        ),
    )
)
def test_arbitrary_objects_never_crash(obj: dict[str, object]) -> None:
    try:
        parse_output_event(json.dumps(obj).encode())
    except InvalidEventError as exc:
        assert exc.reason in INVALID_REASONS
