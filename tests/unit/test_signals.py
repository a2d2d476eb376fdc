"""Per-event signal extraction."""

from __future__ import annotations

import math

import pytest

from driftscope_llm.services.collector.signals import (
    SignalExtractor,
    SignalSettings,
    logprob_features,
    mean_entropy,
)
from driftscope_llm.services.schemas import OutputEvent

TOL = 1e-12


def _event(**kw: object) -> OutputEvent:
    base: dict[str, object] = {
        "event_id": "e",
        "ts": "2026-01-01T00:00:00Z",
        "model": "m",
        "output": "Sure, here is the answer.",
    }
    return OutputEvent.model_validate({**base, **kw})


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I am sorry, I cannot assist with billing questions.",
        "I cannot help with that request.",
        "As an AI language model, I do not have opinions.",
        "I must decline to answer.",
    ],
)
def test_refusals_detected(text: str) -> None:
    assert SignalExtractor(SignalSettings()).is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "Sure, your invoice is attached.",
        "I can help with that: go to Settings > Billing.",
        "Sorry for the wait! Your order shipped today.",
    ],
)
def test_non_refusals(text: str) -> None:
    assert not SignalExtractor(SignalSettings()).is_refusal(text)


def test_logprob_features() -> None:
    f = logprob_features([-0.1, -0.2, -3.0], math.log(0.1))
    assert f["logprob_mean"] == pytest.approx(-3.3 / 3, abs=TOL)
    assert f["logprob_min"] == -3.0
    assert f["low_logprob_share"] == pytest.approx(1 / 3, abs=TOL)
    assert f["length_tokens"] == 3.0
    assert logprob_features(None, -1.0)["logprob_mean"] is None
    assert logprob_features([], -1.0)["logprob_min"] is None


def test_entropy_uniform_and_certain() -> None:
    uniform = {"a": math.log(0.25), "b": math.log(0.25), "c": math.log(0.25), "d": math.log(0.25)}
    assert mean_entropy([uniform]) == pytest.approx(math.log(4), abs=1e-9)
    assert mean_entropy([{"a": 0.0}]) == pytest.approx(0.0, abs=TOL)
    assert mean_entropy([]) is None
    assert mean_entropy([{}]) is None


def test_missing_signals_are_none_not_defaults() -> None:
    v = SignalExtractor(SignalSettings()).extract(_event())
    assert v["logprob_mean"] is None and v["confidence"] is None and v["entropy_mean"] is None
    assert v["refusal"] is False and v["length_chars"] == float(len("Sure, here is the answer."))
