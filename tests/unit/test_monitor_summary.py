"""A drift monitor's summary is a typed record (MonitorSummary), and what reads it — the
collector's gauges — gets the same numbers the monitor holds."""

from __future__ import annotations

import json
import math

import numpy as np
from prometheus_client import CollectorRegistry

from driftscope_llm.services.collector.metrics import CollectorMetrics
from driftscope_llm.services.drift import (
    DEFAULT_SIGNALS,
    DriftSettings,
    MonitorSummary,
    Observation,
    StreamKey,
    StreamMonitor,
)

KEY = StreamKey("m", "v1", "chat")
LABELS = ("m", "v1", "chat")


def _monitor() -> StreamMonitor:
    """A monitor whose refusal and logprob signals are monitoring (reference 200, window 100)
    and whose latency signal never got a value (still collecting)."""
    signals = {k: DEFAULT_SIGNALS[k] for k in ("refusal", "logprob_mean", "latency_ms")}
    s = DriftSettings(signals=signals, reference_size=200, min_reference_values=100,
                      window_size=100, min_window=20, test_every=20, cooldown_events=100)
    mon = StreamMonitor(s, KEY)
    rng = np.random.default_rng(0)
    for i in range(300):
        mon.observe(Observation(str(i), float(i), {
            "refusal": bool(i % 10 == 0), "logprob_mean": float(rng.normal(-1.0, 0.2))}))
    return mon


def test_the_summary_is_typed_and_its_levels_are_the_means_and_rates() -> None:
    summary = _monitor().summary()
    assert isinstance(summary, MonitorSummary)
    assert (summary.key, summary.events, summary.reference_ready) == (KEY, 300, True)
    refusal, logprob, latency = (summary.signals[k]
                                 for k in ("refusal", "logprob_mean", "latency_ms"))
    assert (refusal.state, logprob.state, latency.state) == (
        "monitoring", "monitoring", "collecting")
    assert refusal.reference is not None and refusal.window is not None
    assert refusal.reference_level == refusal.reference["rate"] == 20 / 200
    assert refusal.window_level == refusal.window["rate"] == 10 / 100
    assert logprob.reference is not None and logprob.window is not None
    assert logprob.reference_level == logprob.reference["mean"]
    assert logprob.window_level == logprob.window["mean"]
    assert logprob.effect is not None and logprob.effect.min_effect == \
        DEFAULT_SIGNALS["logprob_mean"].min_effect
    assert set(logprob.detectors) == {d for d in DEFAULT_SIGNALS["logprob_mean"].detectors}
    assert latency.reference_level is None and latency.window_level is None
    assert latency.detectors == {} and latency.effect is None


def test_the_json_form_keeps_the_dict_it_replaced() -> None:
    data = json.loads(json.dumps(_monitor().summary().to_dict()))
    assert set(data) == {"key", "events", "reference_ready", "signals"}
    assert set(data["signals"]["latency_ms"]) == {"kind", "state", "counts", "reference_values"}
    assert set(data["signals"]["refusal"]) == {"kind", "state", "counts", "reference", "window",
                                               "effect", "detectors"}
    assert set(data["signals"]["refusal"]["effect"]) == {"size", "unit", "min_effect"}
    for det in data["signals"]["logprob_mean"]["detectors"].values():
        assert set(det) == {"statistic", "threshold", "p_value", "alarms", "cooling_down",
                            "disabled"}


def test_the_collector_gauges_carry_the_summary() -> None:
    mon = _monitor()
    summary = mon.summary()
    registry = CollectorRegistry()
    CollectorMetrics(registry).export_summary(LABELS, summary)

    def gauge(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(
            name, {"model": "m", "model_version": "v1", "segment": "chat", **labels})

    for signal in ("refusal", "logprob_mean"):
        sig = summary.signals[signal]
        assert gauge("driftscope_signal_window_value", signal=signal) == sig.window_level
        assert gauge("driftscope_signal_reference_value", signal=signal) == sig.reference_level
        for det, d in sig.detectors.items():
            if d.statistic is not None and math.isfinite(d.statistic):
                assert gauge("driftscope_detector_statistic", signal=signal,
                             detector=det) == d.statistic
    assert gauge("driftscope_refusal_rate_ratio") == 0.1
    assert gauge("driftscope_signal_window_value", signal="latency_ms") is None
