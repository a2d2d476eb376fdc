"""X-Driftscope-Signature: what verification must accept and what it must refuse."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from driftscope_llm.services.alerts import SignatureError, sign, verify
from driftscope_llm.services.alerts.signing import ReplayGuard, compute_signature

SECRET = SecretStr("whsec-test-0123456789abcdef")
OTHER = SecretStr("whsec-other-0123456789abcdef")
BODY = b'{"schema":"driftscope.incident.v1","event":"incident.opened"}'
T0 = 1_700_000_000
TOLERANCE = 300.0


def _reason(body: bytes, header: str | None, now: float = T0, secrets: object = SECRET) -> str:
    with pytest.raises(SignatureError) as info:
        verify(body, header, secrets, now=now, tolerance_s=TOLERANCE)  # type: ignore[arg-type]
    return info.value.reason


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = sign(BODY, SECRET, T0)
    expected = hmac.new(SECRET.get_secret_value().encode(), f"{T0}.".encode() + BODY,
                        hashlib.sha256).hexdigest()
    assert header == f"t={T0},v1={expected}"


def test_round_trip_within_tolerance_both_sides() -> None:
    header = sign(BODY, SECRET, T0)
    for now in (T0, T0 + TOLERANCE, T0 - TOLERANCE):
        assert verify(BODY, header, SECRET, now=now, tolerance_s=TOLERANCE) == T0


@pytest.mark.parametrize("skew", [TOLERANCE + 1, -(TOLERANCE + 1), 86_400])
def test_stale_or_future_timestamp_is_refused_even_with_a_valid_mac(skew: float) -> None:
    header = sign(BODY, SECRET, T0)
    assert _reason(BODY, header, now=T0 + skew) == "stale"


def test_tampered_body_is_refused() -> None:
    header = sign(BODY, SECRET, T0)
    assert _reason(BODY.replace(b"opened", b"updated"), header) == "mismatch"
    assert _reason(BODY + b" ", header) == "mismatch"


def test_moving_the_timestamp_breaks_the_signature() -> None:
    """A captured request replayed later with a fresh t= must not verify: t is inside the MAC."""
    v1 = compute_signature(BODY, SECRET, T0)
    later = T0 + 3600
    assert _reason(BODY, f"t={later},v1={v1}", now=later) == "mismatch"


def test_wrong_key_is_refused_and_rotation_accepts_either_key() -> None:
    header = sign(BODY, OTHER, T0)
    assert _reason(BODY, header) == "mismatch"
    assert verify(BODY, header, [SECRET, OTHER], now=T0) == T0
    both = sign(BODY, [SECRET, OTHER], T0)  # a sender mid-rotation signs with both
    assert both.count("v1=") == 2
    assert verify(BODY, both, [OTHER], now=T0) == T0


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        (f"v1={'0' * 64}", "malformed"),
        (f"t={T0}", "malformed"),
        (f"t=abc,v1={'0' * 64}", "malformed"),
        (f"t={T0},t={T0},v1={'0' * 64}", "malformed"),
        (f"t={T0},v1=" + "a" * 5000, "malformed"),
        (f"t={T0},v0={'0' * 64}", "malformed"),
        (f"t={T0},v1={'0' * 64}", "mismatch"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(header: str | None, reason: str) -> None:
    assert _reason(BODY, header) == reason


def test_refusals_never_reveal_the_expected_signature_or_the_key() -> None:
    expected = compute_signature(BODY, SECRET, T0)
    with pytest.raises(SignatureError) as info:
        verify(BODY, f"t={T0},v1={'0' * 64}", SECRET, now=T0)
    text = f"{info.value!s} {info.value!r}"
    assert expected not in text
    assert SECRET.get_secret_value() not in text


@settings(max_examples=200, deadline=None)
@given(body=st.binary(min_size=1, max_size=300), index=st.integers(min_value=0),
       flip=st.integers(min_value=1, max_value=255))
def test_any_single_byte_change_is_detected(body: bytes, index: int, flip: int) -> None:
    header = sign(body, SECRET, T0)
    i = index % len(body)
    tampered = body[:i] + bytes([body[i] ^ flip]) + body[i + 1:]
    with pytest.raises(SignatureError):
        verify(tampered, header, SECRET, now=T0)


def test_replay_guard_refuses_a_second_use_and_forgets_after_the_window() -> None:
    guard = ReplayGuard(tolerance_s=TOLERANCE, max_entries=1000)
    guard.check_and_remember(BODY, T0, now=T0)
    with pytest.raises(SignatureError) as info:
        guard.check_and_remember(BODY, T0, now=T0 + 1)
    assert info.value.reason == "replayed"
    guard.check_and_remember(BODY, T0 + 1, now=T0 + 1)  # new t: accepted
    guard.check_and_remember(BODY, T0 + 400, now=T0 + 400)
    assert len(guard) == 1  # entries past the window were dropped


def test_replay_guard_memory_is_bounded() -> None:
    guard = ReplayGuard(tolerance_s=TOLERANCE, max_entries=10)
    for i in range(50):
        guard.check_and_remember(f"body {i}".encode(), T0, now=T0)
    assert len(guard) == 10


def test_the_documented_verification_snippet_agrees_with_the_signer() -> None:
    import re
    import time
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    section = doc.split("## Verifying the signature", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "docs/webhooks.md", "exec"), namespace)
    check = namespace["verify"]
    now = int(time.time())
    header = sign(BODY, SECRET, now)
    secret = SECRET.get_secret_value()
    assert check(BODY, header, secret) is True  # type: ignore[operator]
    assert check(BODY + b"x", header, secret) is False  # type: ignore[operator]
    assert check(BODY, sign(BODY, SECRET, now - 301), secret) is False  # type: ignore[operator]
    assert check(BODY, header, "another-secret-0123456789") is False  # type: ignore[operator]
