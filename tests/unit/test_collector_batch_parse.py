"""The fast JSON path (orjson) decodes exactly what the standard decoder does, or refuses for
the same reason: same values (types included: ``1`` is not ``1.0``), same dead-letter reasons.

``loads_bounded(raw)`` tries orjson on messages within the depth bound and falls back to the
standard decoder with its exact checks; ``loads_bounded(raw, fast=False)`` is that decoder
alone. Hypothesis drives arbitrary JSON values, their encodings, byte-level mutations and the
poison shapes the collector must dead-letter through both.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftscope_llm.services.errors import InvalidEventError
from driftscope_llm.services.schemas import loads_bounded, parse_output_event

_SCALARS = (st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
            | st.integers(min_value=-(10 ** 30), max_value=10 ** 30) | st.text(max_size=20))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)

POISON = [
    b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e999", b"[1.8e308]", b"-1E400",
    b'"\\ud800"', b'{"\\udc00": 1}', b'"\xed\xa0\x80"', b"\xef\xbb\xbf{}",
    '{"a": "é"}'.encode("utf-16"), b"9" * 70, b"[" + b"1" * 19 + b"]", b"-" + b"1" * 25,
    b"[" * 70 + b"]" * 70, b'{"a": 1,}', b"", b"{", b'"\\u00"', b"[1] x", b"\x00",
    b'{"a": 1, "a": 2.0}', b"-0", b"-0.0", b"1E-400", b"123456789012345678",
]


def _outcome(raw: bytes, fast: bool) -> tuple[str, str]:
    try:
        return "ok", repr(loads_bounded(raw, fast=fast))
    except InvalidEventError as exc:
        return "refused", exc.reason


@pytest.mark.parametrize("raw", POISON)
def test_the_poison_shapes_decode_or_fail_alike(raw: bytes) -> None:
    assert _outcome(raw, True) == _outcome(raw, False)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_VALUES, st.booleans())
def test_json_values_decode_alike(value: Any, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    fast = _outcome(raw, True)
    assert fast == _outcome(raw, False)
    assert fast[0] == "ok"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_VALUES, st.data())
def test_mutated_bytes_decode_or_fail_alike(value: Any, data: st.DataObject) -> None:
    raw = bytearray(json.dumps(value).encode())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.sampled_from(
            [b"NaN", b"1e999", b"\\ud800", b"\xed\xa0\x80", b"[", b"]", b",", b'"', b"\\",
             b"9" * 20, b"e", b"-", b"\xff", b"{}"]))
    assert _outcome(bytes(raw), True) == _outcome(bytes(raw), False)


def test_events_keep_their_integers_through_the_fast_path() -> None:
    """Integers past 64 bits stay integers (orjson alone would make them floats)."""
    event = {"event_id": "e", "ts": "2026-01-01T00:00:00Z", "model": "m", "output": "o",
             "metadata": {"big": 2 ** 70, "neg": -(2 ** 63) - 1, "f": 1.0, "i": 1}}
    parsed = parse_output_event(json.dumps(event).encode())
    assert parsed.metadata == event["metadata"]
    assert parsed.metadata is not None
    assert [type(parsed.metadata[k]) for k in ("big", "neg", "f", "i")] == [int, int, float, int]
