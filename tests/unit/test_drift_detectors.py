"""Property tests for every registered detector: odd input never crashes, state is exact.

Each detector runs alone on one signal of its kind, in a tiny monitor (20-event reference, window
of 20, a test after every value), on hypothesis-generated streams: empty, constant, tiny, with
NaN/±inf/huge values, wrong types, missing values, wrong embedding dimensions. The documented rule
(:mod:`driftscope_llm.services.drift.reference`): non-finite and invalid values are excluded and
counted,
``None`` is counted as missing, degenerate references switch detectors off.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftscope_llm.services.drift import (
    DriftSettings,
    Observation,
    SignalConfig,
    SignalKind,
    StreamKey,
    StreamMonitor,
    available_detectors,
)

KEY = StreamKey("m", "v", "s")
DIM = 4

specials = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0])
floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
continuous = st.one_of(
    st.lists(st.one_of(floats, specials, st.none()), max_size=80),
    st.lists(st.sampled_from([0.5, 2.0]), max_size=80),  # two values: near-constant
    st.lists(st.just(1.0), max_size=80),  # constant
    st.lists(st.one_of(floats, st.sampled_from(["x", True, [1.0]])), max_size=80),
)
boolean = st.lists(st.one_of(st.booleans(), st.none(), st.sampled_from([0, 1, 2, "y", math.nan])),
                   max_size=80)
categorical = st.lists(st.one_of(st.sampled_from(["stop", "length", "filter"]), st.none(),
                                 st.text(max_size=2), st.integers(0, 2), st.just(1.5)),
                       max_size=80)
vector = st.lists(st.one_of(floats, specials), min_size=DIM, max_size=DIM).map(
    lambda v: np.asarray(v, dtype=np.float64))
embedding = st.lists(st.one_of(
    vector, vector, vector, st.none(),
    st.lists(floats, min_size=DIM + 1, max_size=DIM + 1).map(np.asarray),
    st.sampled_from([[[1.0]], "e"])), max_size=80)
VALUES = {SignalKind.CONTINUOUS: continuous, SignalKind.BOOLEAN: boolean,
          SignalKind.CATEGORICAL: categorical, SignalKind.EMBEDDING: embedding}


def tiny_settings(name: str, kind: SignalKind) -> DriftSettings:
    return DriftSettings(
        signals={"sig": SignalConfig(kind=kind, detectors=(name,), min_effect=0.01)},
        reference_size=20, min_reference_values=10, window_size=20, min_window=5, test_every=1,
        cooldown_events=5, permutations=19, embedding_components=2, embedding_clusters=2,
        max_false_alarms_per_100k=5_000.0,  # a loose budget: alarms actually happen
    )


def feed(mon: StreamMonitor, values: list[Any], start: int) -> list[dict[str, Any]]:
    out = []
    for i, v in enumerate(values, start=start):
        for a in mon.observe(Observation(f"e{i}", float(i), {"sig": v})):
            d = a.to_dict()
            json.dumps(d)
            out.append(d)
    return out


DETECTORS = sorted((name, kind) for name, kinds in available_detectors().items()
                   for kind in kinds)


def test_every_detector_is_covered() -> None:
    assert {n for n, _ in DETECTORS} == {
        "ks", "wasserstein", "psi", "cusum", "page_hinkley", "two_proportion",
        "bernoulli_cusum", "chi_square", "embedding_projection", "embedding_clusters",
        "embedding_novelty"}


@pytest.mark.parametrize(("name", "kind"), DETECTORS)
@given(data=st.data())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_odd_input_never_crashes_and_state_is_exact(name: str, kind: SignalKind,
                                                    data: st.DataObject) -> None:
    values = data.draw(VALUES[kind])
    cut = data.draw(st.integers(0, len(values)))
    s = tiny_settings(name, kind)
    mon = StreamMonitor(s, KEY)
    first = feed(mon, values[:cut], 0)
    restored = StreamMonitor.from_state(s, json.loads(json.dumps(mon.state_dict())))
    tail_a = feed(mon, values[cut:], cut)
    tail_b = feed(restored, values[cut:], cut)
    assert tail_a == tail_b
    assert json.dumps(mon.state_dict()) == json.dumps(restored.state_dict())
    counts = mon.counts["sig"]
    assert sum(counts.values()) == len(values)
    json.dumps(mon.summary().to_dict())
    for a in first + tail_a:
        assert a["signal"] == "sig" and a["detector"] == name
        assert math.isfinite(a["statistic"]) and a["effect_size"] >= 0.01


@pytest.mark.parametrize(("name", "kind"), DETECTORS)
def test_constant_stream_never_raises(name: str, kind: SignalKind) -> None:
    const: dict[SignalKind, Any] = {
        SignalKind.CONTINUOUS: 3.0, SignalKind.BOOLEAN: False, SignalKind.CATEGORICAL: "stop",
        SignalKind.EMBEDDING: np.ones(DIM, dtype=np.float32) / 2}
    mon = StreamMonitor(tiny_settings(name, kind), KEY)
    assert feed(mon, [const[kind]] * 300, 0) == []


@pytest.mark.parametrize("name", ["cusum", "page_hinkley"])
def test_inlined_hot_path_equals_the_generic_cusum(name: str) -> None:
    """The rank CUSUM and Page-Hinkley inline their score in ``update`` for speed; the result
    must equal the generic two-sided CUSUM driven by their ``increments``."""
    from driftscope_llm.services.drift.calibration import split_budget
    from driftscope_llm.services.drift.detector import DetectorContext, detector_class
    from driftscope_llm.services.drift.reference import ContinuousReference
    from driftscope_llm.services.drift.sequential import TwoSidedCusum

    rng = np.random.default_rng(2)
    s = DriftSettings(signals={"x": SignalConfig(kind=SignalKind.CONTINUOUS, detectors=(name,),
                                                 min_effect=0.1)},
                      max_false_alarms_per_100k=50_000.0)
    ref = ContinuousReference(np.sort(np.round(rng.normal(size=500), 1)))  # with ties
    ctx = DetectorContext("x", s.signals["x"], s, ref, split_budget(s)[("x", name)], seed=9)
    fast, slow = detector_class(name)(ctx), detector_class(name)(ctx)
    assert isinstance(fast, TwoSidedCusum) and isinstance(slow, TwoSidedCusum)
    values = np.concatenate((rng.normal(size=3000), rng.normal(0.6, 1, 3000))).round(1)
    for i, v in enumerate(values.tolist()):
        a, b = fast.update(v, i), TwoSidedCusum.update(slow, v, i)
        assert a == b
        if a is not None:
            fast.rearm()
            slow.rearm()
        assert fast.runtime_state() == slow.runtime_state()
