"""Seeded statistical behaviour of the whole monitor: a change in one segment alarms only there,
changes below the minimum effect are left alone, CUSUM drifts stay below their thresholds.

False-alarm rates with power are in ``test_false_alarm_power.py``; planted-change delays against
the documented medians, over several seeds, in ``test_drift_delays.py``."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.scenarios import Change, generate, make_world
from driftscope_llm.services.drift import (
    DriftSettings,
    SignalConfig,
    SignalKind,
    StreamKey,
    StreamMonitor,
)
from driftscope_llm.services.drift.calibration import split_budget
from driftscope_llm.services.drift.detector import DetectorContext
from driftscope_llm.services.drift.detectors.bernoulli_cusum import BernoulliCusum
from driftscope_llm.services.drift.detectors.cusum import NormalScoreCusum, shifted
from driftscope_llm.services.drift.reference import BooleanReference, ContinuousReference

WORLD = make_world(0)
LENGTH = 12_000


def alarms(settings: DriftSettings, seed: int, change: Change | None = None,
           segment: str = "s") -> list[tuple[str, str, int]]:
    mon = StreamMonitor(settings, StreamKey("m", "v", segment))
    out = []
    for o in generate(WORLD, LENGTH, seed, change, prefix=f"{segment}-"):
        out += [(a.signal, a.detector, a.event_index) for a in mon.observe(o)]
    return out


@pytest.mark.slow
def test_refusal_spike_in_one_segment_alarms_only_there() -> None:
    s = DriftSettings()
    spike = Change("refusal", 4000, 0.08)
    by_segment = {seg: alarms(s, 20 + seg, spike if seg == 2 else None, f"seg{seg}")
                  for seg in range(4)}
    assert {seg for seg, a in by_segment.items() if a} == {2}
    assert {sig for sig, _, _ in by_segment[2]} == {"refusal"}


def test_significant_but_small_change_never_raises() -> None:
    """A shift of 40 % of the minimum effect in a 20 000-value window: the tests see it
    (tiny p-values), and no alarm is raised, because the effect stays below the minimum."""
    cfg = SignalConfig(kind=SignalKind.CONTINUOUS, detectors=("ks", "wasserstein", "psi"),
                       min_effect=0.25)
    s = DriftSettings(signals={"x": cfg}, reference_size=20_000, window_size=20_000,
                      min_window=20_000, test_every=2000)
    mon = StreamMonitor(s, StreamKey("m", "v", "s"))
    rng = np.random.default_rng(3)
    from driftscope_llm.services.drift import Observation

    raised = []
    values = np.concatenate((rng.normal(size=20_000), rng.normal(0.1, 1.0, size=60_000)))
    for i, v in enumerate(values.tolist()):
        raised += mon.observe(Observation(str(i), float(i), {"x": v}))
    assert raised == []
    summary = mon.summary().signals["x"]
    assert summary.effect is not None and summary.effect.size < 0.25
    p_value = summary.detectors["ks"].p_value
    assert p_value is not None and p_value < 1e-6  # significant, yet immaterial


def context(name: str, kind: SignalKind, ref: ContinuousReference | BooleanReference,
            cfg: SignalConfig) -> DetectorContext:
    s = DriftSettings(signals={"x": cfg})
    return DetectorContext("x", cfg, s, ref, split_budget(s)[("x", name)], seed=1)


@pytest.mark.parametrize("unit", ["std", "relative"])
def test_cusum_drifts_down_under_any_change_below_the_minimum_effect(unit: str) -> None:
    rng = np.random.default_rng(4)
    ref = ContinuousReference(np.sort(np.round(rng.lognormal(4, 0.5, 2000))))
    cfg = SignalConfig(kind=SignalKind.CONTINUOUS, detectors=("cusum",), min_effect=0.2,
                       effect_unit=unit)  # type: ignore[arg-type]
    det = NormalScoreCusum(context("cusum", SignalKind.CONTINUOUS, ref, cfg))
    c = det.calibration
    x = rng.lognormal(4, 0.5, 20_000).round()
    for frac in (0.0, 0.5, 0.9, 1.2):
        scaled = cfg.model_copy(update={"min_effect": max(frac * 0.2, 1e-9)})
        for side, k in ((1, c["k_up"]), (-1, c["k_down"])):
            moved = shifted(scaled, ref, x, side) if frac else x
            z = np.array([det._score(float(v), i) for i, v in enumerate(moved)])
            drift = side * z.mean() - k
            if frac < 1:
                assert drift < 0, (unit, frac, side)
            else:
                assert drift > 0, (unit, frac, side)


def test_bernoulli_cusum_zero_drift_rates_bracket_the_minimum_effect() -> None:
    cfg = SignalConfig(kind=SignalKind.BOOLEAN, detectors=("bernoulli_cusum",),
                       min_effect=0.02, min_relative_effect=0.5)
    for n_true in (0, 40, 200, 1200):
        ref = BooleanReference(2000, n_true)
        det = BernoulliCusum(context("bernoulli_cusum", SignalKind.BOOLEAN, ref, cfg))
        c = det.calibration
        p0 = c["p0"]
        d = max(0.02, 0.5 * p0)
        assert c["up"]["zero_drift_rate"] >= p0 + d - 1e-12
        if c["down"] is not None:
            assert c["down"]["zero_drift_rate"] <= p0 - d + 1e-12
        else:
            assert p0 - d <= 0
