"""Per-incident trust: levels follow the measured family accuracy and method agreement."""

from __future__ import annotations

import pytest

from driftscope_llm.attribution import trust
from driftscope_llm.attribution.settings import AttributionSettings
from driftscope_llm.attribution.trust import Measured, assess


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trust, "MEASURED", {"m": {
        "style": Measured(0.97, 0.95, 0.1), "topic": Measured(0.8, 0.7, 0.05),
        "trigger": Measured(0.5, 0.4, 0.2), "rule": Measured(0.3, 0.25, 0.0)}})


def test_levels_follow_family_accuracy_and_agreement(table) -> None:
    assert assess("m", "length_tokens", None).level == "high"
    assert assess("m", "length_chars", 0.8).level == "high"
    assert assess("m", "latency_ms", 0.1).level == "low"  # the methods disagree
    assert assess("m", "embedding", 0.9).level == "medium"
    low = assess("m", "refusal", 0.9)
    assert low.level == "low" and low.family == "trigger"
    assert "leads only" in low.advice and "at least 40%" in low.advice


def test_unknown_signal_uses_the_worst_family(table) -> None:
    a = assess("m", "custom-signal", None)
    assert a.family == "rule" and a.level == "low"


def test_the_default_method_has_measurements_for_every_family() -> None:
    default = AttributionSettings().spec
    assert set(trust.MEASURED[default]) >= set(trust.SIGNAL_FAMILY.values())
    a = assess(default, "length_tokens", 0.6)
    assert a.measured_cover is not None and a.advice.startswith(a.level)


@pytest.mark.parametrize("signal", ["length_tokens", "length_chars", "logprob_mean",
                                    "entropy_mean", "confidence", "latency_ms", "finish_reason"])
def test_the_signals_the_collector_emits_for_style_use_the_style_family(table, signal) -> None:
    """The names the collector emits, not the short names a person would say: on 44e8acf
    ``length_tokens`` fell back to the worst family (rule) and said low trust."""
    a = assess("m", signal, 0.6)
    assert (a.family, a.level, a.measured_cover) == ("style", "high", 0.97)


def test_a_length_incident_on_the_default_method_reads_the_style_figures() -> None:
    default = AttributionSettings().spec
    style = trust.MEASURED[default]["style"]
    a = assess(default, "length_tokens", 0.6)
    assert (a.family, a.measured_cover, a.measured_cover_lo) == ("style", style.cover,
                                                                 style.cover_lo)
