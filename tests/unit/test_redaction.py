"""Redaction: every planted secret or piece of personal data is removed; ordinary text is kept."""

from __future__ import annotations

import base64
import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.config import SegmentSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.security import (
    BUILTIN_DETECTORS,
    RedactionSettings,
    Redactor,
    luhn_valid,
)
from driftscope_llm.services.store import MemoryStore

R = Redactor()
ALNUM = string.ascii_letters + string.digits

# ordinary words around the planted value: no digits, no @, nothing a detector could take
filler = st.lists(st.sampled_from(
    ["the", "model", "answered", "quickly", "and", "politely", "about", "refunds", "Paris",
     "weather", "is", "fine", "today", "order", "shipped", "thanks", ",", ".", "key", "points"]),
    min_size=0, max_size=12).map(" ".join)


def _luhn_complete(prefix: str) -> str:
    for d in "0123456789":
        if luhn_valid(prefix + d):
            return prefix + d
    raise AssertionError("unreachable")


@st.composite
def cards(draw: st.DrawFn) -> str:
    n = draw(st.sampled_from([13, 15, 16, 19]))
    body = draw(st.text("0123456789", min_size=n - 2, max_size=n - 2))
    digits = _luhn_complete(draw(st.sampled_from("3456")) + body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    return sep.join(digits[i:i + 4] for i in range(0, len(digits), 4))


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(st.text(ALNUM + "._+-", min_size=1, max_size=20).filter(
        lambda s: s[0] not in ".-+" and s[-1] not in ".-+"))
    host = draw(st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12))
    tld = draw(st.sampled_from(["com", "org", "co.uk", "io", "de"]))
    return f"{local}@{host}.{tld}"


@st.composite
def phones(draw: st.DrawFn) -> str:
    d = lambda n: "".join(draw(st.text("0123456789", min_size=n, max_size=n)))  # noqa: E731
    form = draw(st.integers(0, 3))
    if form == 0:
        return "+" + draw(st.sampled_from("123456789")) + d(draw(st.integers(7, 14)))
    if form == 1:
        return f"({d(3)}) {d(3)}-{d(4)}"
    if form == 2:
        return f"{d(3)}-{d(3)}-{d(4)}"
    return f"+{d(2)} {d(2)} {d(4)} {d(4)}"


def _rand(seed: int, alphabet: str, n: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


@st.composite
def tokens(draw: st.DrawFn) -> str:
    seed = draw(st.integers(0, 2**32))
    kind = draw(st.integers(0, 9))
    rng = random.Random(seed)
    if kind == 0:
        return "sk-" + draw(st.sampled_from(["", "proj-", "ant-api03-"])) + _rand(seed, ALNUM, 40)
    if kind == 1:
        return "AKIA" + _rand(seed, string.ascii_uppercase + string.digits, 16)
    if kind == 2:
        return draw(st.sampled_from(["ghp_", "gho_", "ghs_"])) + _rand(seed, ALNUM, 36)
    if kind == 3:
        return "Bearer " + _rand(seed, ALNUM + "._-", 40)
    if kind == 4:
        return "xoxb-" + _rand(seed, string.digits, 12) + "-" + _rand(seed + 1, ALNUM, 24)
    if kind == 5:
        return "sk_live_" + _rand(seed, ALNUM, 24)
    if kind == 6:
        return rng.randbytes(24).hex()  # 48 hex characters
    if kind == 7:
        return base64.b64encode(rng.randbytes(30)).decode()
    if kind == 8:
        return base64.urlsafe_b64encode(rng.randbytes(33)).decode()
    return "password=" + _rand(seed, ALNUM + "!#$%", 12)


@settings(max_examples=300, deadline=None)
@given(before=filler, after=filler, secret=st.one_of(cards(), emails(), phones(), tokens()))
def test_every_planted_value_is_removed(before: str, after: str, secret: str) -> None:
    text = f"{before} {secret} {after}"
    out = R.redact(text)
    assert secret not in out
    assert "[REDACTED:" in out
    assert R.redact(out) == out  # idempotent


@settings(max_examples=200, deadline=None)
@given(words=filler, digits=st.text("0123456789", min_size=13, max_size=19))
def test_digit_runs_failing_luhn_are_kept(words: str, digits: str) -> None:
    if luhn_valid(digits):
        digits = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    assert not luhn_valid(digits)
    text = f"{words} order {digits} {words}"
    assert R.redact(text) == text


@settings(max_examples=200, deadline=None)
@given(text=filler)
def test_ordinary_text_is_untouched(text: str) -> None:
    assert R.redact(text) == text


@pytest.mark.parametrize("text", [
    "On 2024-01-15 at 10:30 we released version 1.2.3 of the model.",
    "Your order #12345 ships in 3-5 days; see https://example.com/Docs/v2/api/reference/Section12",
    "The answer is 42, and 3.14159 is pi. Room 101, floor 7.",
    "Use the key points below: first, the secret to good bread is time.",
    "Serial 4111 1111 1111 1112 is not a card.",
    "Function calculate_total_amount_for_customer_invoice runs daily.",
])
def test_known_ordinary_sentences_are_untouched(text: str) -> None:
    assert R.redact(text) == text


def test_luhn_known_values() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("12a4")


def test_settings_switch_detectors_and_add_patterns() -> None:
    r = Redactor(RedactionSettings(disabled=["email"], patterns=[
        {"name": "employee", "regex": r"EMP-\d{6}"}]))  # type: ignore[list-item]
    assert r.redact("mail a@b.com, EMP-123456") == "mail a@b.com, [REDACTED:employee]"
    assert Redactor(RedactionSettings(enabled=False)).redact("a@b.com") == "a@b.com"
    with pytest.raises(ValidationError):
        RedactionSettings(disabled=["nope"])
    with pytest.raises(ValidationError):
        RedactionSettings(patterns=[{"name": "x", "regex": "("}])  # type: ignore[list-item]
    assert set(BUILTIN_DETECTORS) >= {"email", "card", "phone", "api_key"}


def test_findings_name_the_detector_and_span() -> None:
    text = "mail jo@example.com card 4111-1111-1111-1111"
    found = R.findings(text)
    assert [(f.name, text[f.start:f.end]) for f in found] == [
        ("email", "jo@example.com"), ("card", "4111-1111-1111-1111")]


def test_pipeline_redacts_exemplars_before_they_are_stored() -> None:
    """The ring that checkpoints and incidents are built from holds redacted text only."""
    store = MemoryStore()
    pipe = Pipeline(DriftSettings(), SignalExtractor(SignalSettings()), SegmentSettings(), store)
    state = PartitionState(topic="t", partition=0)
    ev = OutputEvent.model_validate({
        "event_id": "e1", "ts": "2024-01-01T00:00:00Z", "model": "m",
        "prompt": "my card is 4111 1111 1111 1111, mail me at ann@example.com",
        "output": "Sure, use key sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"})
    pipe.process(state, [(0, ev)])
    cp = state.to_checkpoint(ev.ts).model_dump_json()
    for secret in ("4111 1111 1111 1111", "ann@example.com", "sk-proj-ABCDEFGH"):
        assert secret not in cp
    assert "[REDACTED:card]" in cp and "[REDACTED:api_key]" in cp


@pytest.mark.parametrize(("text", "redacted"), [
    # random base64 that happens to hold four slashes (found by the property test above)
    ("key yL+oyotEpE26pi/9S/EclYp667JbUHiZ9/iVj6Wf here", True),
    ("see https://example.com/api/v1/users/12345/profile/Settings2x now", False),
    ("path /srv/data/Models/llama3/checkpoints/step-1200/Adapter9 ok", False),
])
def test_slashes_alone_do_not_make_base64_a_path(text: str, redacted: bool) -> None:
    out = Redactor(RedactionSettings()).redact(text)
    assert ("[REDACTED:secret_b64]" in out) is redacted, out
