"""Strict types on the wire and counted segment folds (issue 28, item 4).

A number is a JSON number: ``"token_logprobs": ["-0.5"]`` used to be coerced by pydantic and
accepted; now it is ``wrong_type``. ``"confidence": "NaN"`` used to be coerced to nan and
refused as ``invalid_value`` ("less than or equal to 1"); now it is ``non_finite``, what it is.
And 19,984 route values folded into ``route=other`` used to leave no trace in the metrics: each
fold is counted in ``driftscope_streams_folded_total{kind="segment", label="route"}``.
On 44e8acf ``["-0.5"]`` was accepted and ``"NaN"`` was ``invalid_value``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from driftscope_llm.services.bus import MemoryBroker, TopicSettings
from driftscope_llm.services.collector.metrics import CollectorMetrics
from driftscope_llm.services.collector.pipeline import Pipeline
from driftscope_llm.services.collector.segments import SegmentKeyer, SegmentSettings
from driftscope_llm.services.collector.service import Collector
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.errors import InvalidEventError
from driftscope_llm.services.schemas import parse_output_event
from driftscope_llm.services.store import MemoryStore

EVENT = {"event_id": "e1", "ts": "2026-12-01T10:00:00Z", "model": "m", "output": "fine"}


def reason(**fields: Any) -> tuple[str, str]:
    """The dead-letter reason and detail of EVENT with ``fields``; ("ok", "") when accepted."""
    try:
        parse_output_event(json.dumps({**EVENT, **fields}).encode())
    except InvalidEventError as exc:
        return exc.reason, exc.detail
    return "ok", ""


@pytest.mark.parametrize(("fields", "expected"), [
    ({"token_logprobs": ["-0.5"]}, ("wrong_type", "token_logprobs.0: Input should be a valid "
                                                   "number")),
    ({"token_logprobs": [-0.2, True]}, ("wrong_type", "token_logprobs.1: Input should be a "
                                                      "valid number")),
    ({"confidence": "0.9"}, ("wrong_type", "confidence: Input should be a valid number")),
    ({"latency_ms": "350"}, ("wrong_type", "latency_ms: Input should be a valid number")),
    ({"top_logprobs": [{"a": "-1"}]}, ("wrong_type", "top_logprobs.0.a: Input should be a "
                                                     "valid number")),
    ({"confidence": "NaN"}, ("non_finite", "confidence: Value error, non_finite: the string "
                                           "'NaN' is not a finite number")),
    ({"latency_ms": "-Infinity"}, ("non_finite", "latency_ms: Value error, non_finite: the "
                                                 "string '-Infinity' is not a finite number")),
    ({"token_logprobs": [-0.1, "nan"]}, ("non_finite", "token_logprobs.1: Value error, "
                                         "non_finite: the string 'nan' is not a finite number")),
    ({"top_logprobs": [{"a": "inf"}]}, ("non_finite", "top_logprobs.0.a: Value error, "
                                        "non_finite: the string 'inf' is not a finite number")),
])
def test_numbers_are_never_coerced_from_strings(fields: dict[str, Any],
                                               expected: tuple[str, str]) -> None:
    assert reason(**fields) == expected


def test_json_numbers_still_pass_and_integers_are_floats() -> None:
    event = parse_output_event(json.dumps({**EVENT, "token_logprobs": [-1, -0.5],
                                           "confidence": 1, "latency_ms": 350}).encode())
    assert (event.token_logprobs, event.confidence, event.latency_ms) == ([-1.0, -0.5], 1.0,
                                                                          350.0)
    assert reason(confidence=2) == ("invalid_value",
                                    "confidence: Input should be less than or equal to 1")


def test_segment_values_past_the_cap_are_counted_per_label() -> None:
    folds: list[str] = []
    keyer = SegmentKeyer(SegmentSettings(max_values=2), on_fold=folds.append)
    keys = [keyer.segments_for("m", {"route": f"r{i}", "tier": "gold"}) for i in range(5)]
    assert keys[-1] == ["all", "route=other", "tier=gold"]
    assert folds == ["route"] * 3
    keyer.segments_for("m", {"route": "other"})  # a value that says 'other' is not folded
    assert folds == ["route"] * 3


def test_values_off_the_allow_list_are_counted() -> None:
    folds: list[str] = []
    keyer = SegmentKeyer(SegmentSettings(label="route", allowed=["billing"]),
                         on_fold=folds.append)
    assert [keyer.segments_for("m", {"route": r})[1] for r in ("billing", "spam", "x")] == [
        "billing", "other", "other"]
    assert keyer.segments_for("m", {})[1] == "unlabelled"  # no value: nothing folded
    assert folds == ["route", "route"]


def test_the_collector_exports_segment_folds() -> None:
    """Through the collector's metrics: every event past the cap counted once, by label."""
    topics = TopicSettings(outputs="in", dead_letter="in.dlq", anomalies="anomalies")
    broker = MemoryBroker()
    for i in range(100):
        broker.append("in", json.dumps({**EVENT, "event_id": f"e{i}",
                                        "segment": {"route": f"r{i}"}}).encode())
    metrics = CollectorMetrics(CollectorRegistry())
    store = MemoryStore()
    pipeline = Pipeline(DriftSettings(), SignalExtractor(SignalSettings()),
                        SegmentSettings(max_values=20), store,
                        on_segment_fold=lambda label: metrics.count_fold("segment", label))
    Collector(pipeline, store, metrics, broker.member("c"), topics).run(max_idle_s=0.0)
    folded = metrics.streams_folded
    assert folded.labels("segment", "route")._value.get() == 80.0
    assert folded.labels("model", "")._value.get() == 0.0
