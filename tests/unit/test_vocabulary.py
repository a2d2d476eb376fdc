"""The shared signal vocabulary: every signal the collector can emit is named in it and has a
trust family, and the other packages' tables are keyed by it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from driftscope_llm.attribution.trust import SIGNAL_FAMILY
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.drift.settings import DEFAULT_SIGNALS
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.store.facets import SIGNAL_ORDER
from driftscope_llm.services.vocabulary import Signal, signal_or_none

ROOT = Path(__file__).resolve().parents[2]


def _emitted() -> set[str]:
    """Every name the extractor returns for an event that carries everything, plus the
    embedding the pipeline adds."""
    event = OutputEvent.model_validate({
        "event_id": "e", "ts": "2026-01-01T00:00:00Z", "model": "m", "output": "hello there",
        "token_logprobs": [-0.1, -2.5], "top_logprobs": [{"a": -0.1, "b": -2.4}],
        "confidence": 0.5, "latency_ms": 12.0, "finish_reason": "stop"})
    names = set(SignalExtractor(SignalSettings()).extract(event))
    return names | {"embedding"}


def test_every_emitted_signal_is_in_the_vocabulary() -> None:
    assert _emitted() == {s.value for s in Signal}


def test_every_signal_the_extractor_can_emit_maps_to_a_trust_family() -> None:
    """Fails on 44e8acf, whose trust table knew ``length``/``latency`` but not the names the
    collector emits."""
    missing = {name for name in _emitted() if signal_or_none(name) not in SIGNAL_FAMILY}
    assert missing == set()
    assert set(SIGNAL_FAMILY.values()) == {"topic", "trigger", "style"}


def test_drift_defaults_and_facet_order_use_the_vocabulary() -> None:
    assert set(DEFAULT_SIGNALS) == set(Signal)
    assert all(isinstance(k, Signal) for k in DEFAULT_SIGNALS)
    assert set(SIGNAL_ORDER) == set(Signal)


def test_signal_or_none_refuses_names_driftscope_does_not_emit() -> None:
    assert signal_or_none("length_tokens") is Signal.LENGTH_TOKENS
    assert signal_or_none("length") is None
    assert signal_or_none(None) is None


def test_dashboard_signal_label_values_are_signals() -> None:
    """Every ``signal="…"`` value a dashboard or alert rule filters on is a real signal."""
    found: set[str] = set()
    files = [*ROOT.joinpath("grafana").rglob("*.json"),
             *ROOT.joinpath("deploy", "prometheus").rglob("*.y*ml")]
    for path in files:
        text = path.read_text()
        if path.suffix == ".json":
            text = json.dumps(json.loads(text))
        found |= set(re.findall(r'signal\\?"?\s*=~?\s*\\?"([a-z_]+)', text))
    assert found, "no dashboard filters on a signal: the pattern no longer matches"
    assert found - {s.value for s in Signal} == set()
