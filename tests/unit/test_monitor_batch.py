"""observe_batch is observe, event by event: same anomalies (every field, same order), same state.

Streams with planted changes of every signal kind, odd values (missing, NaN, inf, huge, wrong
types), random batch splits (single events up to several hundred), rollouts seeded with a
reference snapshot, and checkpoints restored mid-stream. Each test also checks that the stream
raised anomalies on every kind it plants a change in, so the comparison is not between two
empty lists, and that the cooldown let a continuing drift raise more than once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

from driftscope_llm.services.drift import (
    DEFAULT_SIGNALS,
    DriftSettings,
    Observation,
    ObservationBatch,
    SignalConfig,
    SignalKind,
    StreamKey,
    StreamMonitor,
)
from driftscope_llm.services.drift.calibration import Budget
from driftscope_llm.services.drift.detector import DetectorContext
from driftscope_llm.services.drift.detectors.cusum import uniform_hash, uniform_hashes
from driftscope_llm.services.drift.effect_precheck import EffectGate, plan_rounds
from driftscope_llm.services.drift.effects import WindowView
from driftscope_llm.services.drift.reference import (
    BooleanReference,
    CategoricalReference,
    ContinuousReference,
)
from driftscope_llm.services.drift.sequential import TwoSidedCusum
from driftscope_llm.services.drift.window import SignalWindow

KEY = StreamKey("m", "v2", "billing")
DIM = 24
CHANGE_AT = 900


def settings(**kw: Any) -> DriftSettings:
    """Small windows and a short cooldown, so that short streams alarm often; Page-Hinkley
    beside the rank CUSUM so that both sequential scores run."""
    cont = DEFAULT_SIGNALS["logprob_mean"].model_copy(
        update={"detectors": ("ks", "cusum", "page_hinkley")})
    signals = {
        "logprob_mean": cont,
        "length_tokens": DEFAULT_SIGNALS["length_tokens"],
        "confidence": DEFAULT_SIGNALS["confidence"],
        "refusal": DEFAULT_SIGNALS["refusal"],
        "finish_reason": DEFAULT_SIGNALS["finish_reason"],
        "embedding": SignalConfig(kind=SignalKind.EMBEDDING,
                                  detectors=("embedding_projection", "embedding_clusters",
                                             "embedding_novelty"),
                                  min_effect=0.05, window_size=120),
    }
    base: dict[str, Any] = {"signals": signals, "reference_size": 400,
                            "min_reference_values": 120, "window_size": 200, "min_window": 60,
                            "test_every": 20, "cooldown_events": 150, "permutations": 99,
                            "embedding_components": 4, "embedding_clusters": 3}
    base.update(kw)
    return DriftSettings.model_validate(base)


def stream(n: int, seed: int, *, odd: bool = True, prefix: str = "e") -> list[Observation]:
    """Every kind, a change at CHANGE_AT in each, and (``odd``) values that break the rules."""
    rng = np.random.default_rng(seed)
    after = np.arange(n) >= CHANGE_AT
    lp = rng.normal(-0.45, 0.12, n) - 0.15 * after
    tokens = np.maximum(1.0, np.round(np.exp(rng.normal(3.0, 0.6, n)) * (1 + 0.4 * after)))
    conf = np.round(rng.uniform(0, 1, n), 1)  # heavy ties with the reference
    refusal = rng.random(n) < np.where(after, 0.2, 0.03)
    finish = np.where(rng.random(n) < np.where(after, 0.3, 0.05), "length", "stop")
    centers = rng.normal(size=(4, DIM))
    topic = np.where(after & (rng.random(n) < 0.5), 3, rng.integers(0, 3, n))
    out = []
    for i in range(n):
        values: dict[str, Any] = {
            "logprob_mean": float(lp[i]), "length_tokens": float(tokens[i]),
            "confidence": float(conf[i]), "refusal": bool(refusal[i]),
            "finish_reason": str(finish[i]), "embedding": None, "not_a_signal": 1.0}
        if rng.random() < 0.5:
            v = centers[topic[i]] + 0.4 * rng.normal(size=DIM)
            values["embedding"] = v / np.linalg.norm(v)
        if odd and rng.random() < 0.08:
            name = str(rng.choice(["logprob_mean", "confidence", "refusal", "finish_reason",
                                   "embedding", "length_tokens"]))
            bad: list[Any] = [None, float("nan"), float("inf"), 1e200, "x", True, 1, 0, 7,
                              np.float32(0.5), np.int64(3), np.ones(DIM + 1), np.bool_(True)]
            values[name] = bad[int(rng.integers(len(bad)))]
        out.append(Observation(f"{prefix}{i}", float(i), values))
    return out


def column(values: list[Any], rng: np.random.Generator) -> Any:
    """A batch column as a collector builds one: an array when every value is a plain float
    or bool (and the coin says so), else a list."""
    if rng.random() < 0.7 and values and all(type(v) is float for v in values):
        return np.asarray(values, dtype=np.float64)
    if rng.random() < 0.7 and values and all(type(v) is bool for v in values):
        return np.asarray(values, dtype=bool)
    return list(values)


def batches(events: list[Observation], rng: np.random.Generator,
            sizes: tuple[int, ...] = (1, 3, 17, 50, 100, 233, 500)) -> Iterator[ObservationBatch]:
    i = 0
    while i < len(events):
        chunk = events[i : i + int(rng.choice(sizes))]
        names = list(chunk[0].values)
        cols = {n: column([o.values[n] for o in chunk], rng) for n in names}
        yield ObservationBatch([o.event_id for o in chunk], [o.ts for o in chunk], cols)
        i += len(chunk)


def one_by_one(mon: StreamMonitor, events: list[Observation]) -> list[dict[str, Any]]:
    return [a.to_dict() for o in events for a in mon.observe(o)]


def batched(mon: StreamMonitor, events: list[Observation],
            rng: np.random.Generator) -> list[dict[str, Any]]:
    return [a.to_dict() for b in batches(events, rng) for a in mon.observe_batch(b)]


def same(a: Any, b: Any) -> bool:
    """Equal as JSON (numpy and Python scalars alike), floats bit for bit via repr."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True,
                                                                      default=repr)


def assert_planted_changes_raised(anomalies: list[dict[str, Any]]) -> None:
    per = Counter((a["signal"], a["detector"]) for a in anomalies)
    signals = {s for s, _ in per}
    assert {"logprob_mean", "length_tokens", "refusal", "finish_reason",
            "embedding"} <= signals, per
    assert max(per.values()) >= 2, per  # a continuing drift re-raised after the cooldown
    assert {"cusum", "bernoulli_cusum", "ks", "chi_square"} <= {d for _, d in per}, per


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batches_of_any_size_raise_what_events_one_by_one_raise(seed: int) -> None:
    s = settings()
    events = stream(2600, seed)
    ref = StreamMonitor(s, KEY)
    mon = StreamMonitor(s, KEY)
    expected = one_by_one(ref, events)
    got = batched(mon, events, np.random.default_rng(seed))
    assert_planted_changes_raised(expected)
    assert same(got, expected)
    assert same(mon.state_dict(), ref.state_dict())
    assert mon.counts == ref.counts and mon.n_events == ref.n_events


def test_a_rollout_seeded_with_a_snapshot_and_restored_mid_stream() -> None:
    s = settings()
    previous = StreamMonitor(s, StreamKey("m", "v1", "billing"))
    one_by_one(previous, stream(300, 7, odd=False, prefix="p"))  # short: frozen early
    snapshot = previous.freeze_reference()
    assert snapshot is not None
    events = stream(2400, 8)
    ref = StreamMonitor(s, KEY, reference=snapshot, budget_share=0.5)
    expected = one_by_one(ref, events)
    rng = np.random.default_rng(8)
    mon = StreamMonitor(s, KEY, reference=snapshot, budget_share=0.5)
    got = batched(mon, events[:1234], rng)
    restored = StreamMonitor.from_state(s, json.loads(json.dumps(mon.state_dict())))
    got += batched(restored, events[1234:], rng)
    assert_planted_changes_raised(expected)
    assert same(got, expected)
    assert same(restored.state_dict(), ref.state_dict())


def test_batches_mixed_with_single_events_and_a_stream_without_changes() -> None:
    s = settings()
    events = stream(2000, 11)
    ref = StreamMonitor(s, KEY)
    mon = StreamMonitor(s, KEY)
    expected = one_by_one(ref, events)
    rng = np.random.default_rng(11)
    got: list[dict[str, Any]] = []
    i = 0
    for b in batches(events, rng, sizes=(7, 64)):
        if rng.random() < 0.3:  # the same events through observe
            got += one_by_one(mon, events[i : i + len(b)])
        else:
            got += [a.to_dict() for a in mon.observe_batch(b)]
        i += len(b)
    assert same(got, expected)
    assert same(mon.state_dict(), ref.state_dict())
    quiet = stream(1500, 12, odd=False)[:CHANGE_AT]
    a, b2 = StreamMonitor(s, KEY), StreamMonitor(s, KEY)
    assert same(batched(b2, quiet, rng), one_by_one(a, quiet))
    assert same(b2.state_dict(), a.state_dict())


def test_default_settings_on_the_ten_scalar_signals() -> None:
    s = DriftSettings()
    rng = np.random.default_rng(3)
    n = 3000
    after = np.arange(n) >= 1500
    cols: dict[str, Any] = {name: rng.normal(size=n) - 0.8 * after
                            for name, c in s.signals.items() if c.kind is SignalKind.CONTINUOUS}
    cols["refusal"] = rng.random(n) < np.where(after, 0.12, 0.02)
    cols["finish_reason"] = list(np.where(rng.random(n) < 0.05, "length", "stop").tolist())
    ids, ts = [f"e{i}" for i in range(n)], [float(i) for i in range(n)]
    full = ObservationBatch(ids, ts, cols)
    ref = StreamMonitor(s, KEY)
    expected = [a.to_dict() for o in full.rows() for a in ref.observe(o)]
    mon = StreamMonitor(s, KEY)
    got = []
    for lo in range(0, n, 250):
        part = ObservationBatch(ids[lo : lo + 250], ts[lo : lo + 250],
                                {k: v[lo : lo + 250] for k, v in cols.items()})
        got += [a.to_dict() for a in mon.observe_batch(part)]
    assert {a["detector"] for a in expected} >= {"cusum", "ks", "bernoulli_cusum"}
    assert same(got, expected)
    assert same(mon.state_dict(), ref.state_dict())


def test_a_column_of_the_wrong_length_is_refused_before_anything_changes() -> None:
    mon = StreamMonitor(settings(), KEY)
    bad = ObservationBatch(["a", "b"], [0.0, 1.0], {"confidence": [0.5, 0.5],
                                                    "logprob_mean": [0.1]})
    with pytest.raises(ValueError, match="logprob_mean"):
        mon.observe_batch(bad)
    assert mon.n_events == 0 and mon.counts["confidence"]["observed"] == 0


def test_vectorised_tie_hashes_are_the_scalar_ones() -> None:
    idx = np.array([0, 1, 2, 10**6, 2**40, 2**62], dtype=np.int64)
    for seed in (0, 1, 2**62 + 12345):
        assert uniform_hashes(seed, idx).tolist() == [uniform_hash(seed, int(i)) for i in idx]


@pytest.mark.parametrize("kind", [SignalKind.CONTINUOUS, SignalKind.CATEGORICAL])
def test_window_extend_is_append_in_turn(kind: SignalKind) -> None:
    rng = np.random.default_rng(5)
    a, b = SignalWindow(kind, 37), SignalWindow(kind, 37)
    i = 0
    for size in (5, 30, 1, 37, 80, 12, 36, 2):
        vals = (rng.normal(size=size) if kind is SignalKind.CONTINUOUS
                else [str(x) for x in rng.integers(0, 4, size)])
        ids = [f"e{i + j}" for j in range(size)]
        for v, e, j in zip(list(vals), ids, range(i, i + size), strict=True):
            a.append(float(v) if kind is SignalKind.CONTINUOUS else v, e, j)
        b.extend(vals, ids, list(range(i, i + size)))
        i += size
        assert same(a.state_dict(), b.state_dict())
        if kind is SignalKind.CATEGORICAL:
            assert b.category_counts() == dict(Counter(b.values()))


class Scripted(TwoSidedCusum):
    """A two-sided CUSUM whose increments are given (index → (up, down)): sums whose rounding
    lands on 0 and on the threshold, which real scores reach only by chance."""

    script: ClassVar[dict[int, tuple[float, float]]] = {}

    @classmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        raise AssertionError("built with its calibration")

    def increments(self, x: float, index: int) -> tuple[float, float]:
        return self.script[index]

    def effect(self, segment_mean: float, side: int) -> tuple[float, bool]:
        return abs(segment_mean), segment_mean * side < 0.5  # some crossings fail the effect


def scripted(h: float) -> Scripted:
    ctx = DetectorContext("x", DEFAULT_SIGNALS["confidence"], DriftSettings(),
                          ContinuousReference(np.arange(10.0)), Budget(1e-5, 1e-5, 1e5))
    return Scripted(ctx, {"disabled": None, "k_up": 0.0, "k_down": 0.0, "h_up": h,
                          "h_down": h})


@pytest.mark.parametrize("seed", range(6))
def test_cusum_array_pass_matches_the_recursion_where_rounding_decides(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    steps = rng.choice([0.1, 0.2, -0.3, 0.7, -0.1, -0.2, 0.3, 1e-17, -1e-17, 0.0], size=(n, 2))
    Scripted.script = {i: (float(a), float(b)) for i, (a, b) in enumerate(steps)}
    values = rng.normal(size=n)
    indices = np.arange(n, dtype=np.int64)
    h = 0.6 if seed % 2 else 0.1 + 0.2  # a threshold that rounding reaches or just misses
    one, many = scripted(h), scripted(h)
    expected = []
    for i in range(n):
        finding = one.update(float(values[i]), i)
        if finding is not None:
            one.rearm()
            expected.append((i, finding))
    got, pos = [], 0
    while pos < n:
        size = int(rng.integers(1, 400))
        got += [(pos + j, f) for j, f in many.update_batch(values[pos : pos + size],
                                                            indices[pos : pos + size])]
        pos += size
    assert len(expected) > 10
    assert got == expected
    assert same(many.state_dict(), one.state_dict())


@pytest.mark.parametrize(("unit", "planned"), [("std", False), ("relative", False),
                                               ("std", True), ("relative", True)])
def test_the_effect_gate_never_skips_a_window_whose_effect_passes(unit: str,
                                                                  planned: bool) -> None:
    """The gate (quantile form, then bounds carried between rounds, round by round or planned
    for a batch's rounds at once) may only say "certainly below" of windows whose exact effect
    does not reach the minimum; checked at every round of a window that drifts slowly up to and
    past the minimum effect, down and up again (some rounds not asked, as under a cooldown)."""
    rng = np.random.default_rng(4)
    config = DEFAULT_SIGNALS["length_tokens" if unit == "relative" else "confidence"]
    ref = ContinuousReference(np.sort(rng.lognormal(3.0, 0.5, 400)))
    gate = EffectGate(config, ref)
    window = SignalWindow(SignalKind.CONTINUOUS, 200)
    shift = np.concatenate((np.linspace(0, 0.5, 60), np.linspace(0.5, -0.3, 60),
                            np.linspace(-0.3, 0.2, 60)))
    said, passed, close = Counter[bool](), 0, 0
    values = rng.lognormal(3.0 + np.repeat(shift, 20), 0.5)
    for i in range(len(shift)):
        if planned and i % 7 == 0 and len(window) == window.capacity:  # a batch of 7 rounds
            plan_rounds([(gate, window, values[20 * i : 20 * i + 140])], 20)
        window.extend(values[20 * i : 20 * i + 20], [f"e{i}"] * 20,
                      list(range(20 * i, 20 * i + 20)))
        window.new_since_test = 0  # a round (as the monitor resets it)
        if i % 5 == 3:
            continue
        view = WindowView(config, ref, window)
        below = gate.certainly_below(view)
        effect = WindowView(config, ref, window).effect
        said[below] += 1
        passed += effect.passes
        close += abs(effect.size / config.min_effect - 1) < 0.1
        assert not (below and effect.passes), (i, effect)
    assert said[True] > 30 and passed > 30 and close > 5, (said, passed, close)


def test_the_boolean_gate_is_the_rate_rule() -> None:
    config = DEFAULT_SIGNALS["refusal"]
    ref = BooleanReference(1000, 20)
    rng = np.random.default_rng(9)
    gate = EffectGate(config, ref)
    window = SignalWindow(SignalKind.BOOLEAN, 500)
    for i, rate in enumerate(np.linspace(0.0, 0.1, 120)):
        window.extend((rng.random(50) < rate).astype(np.float64), ["e"] * 50, [i] * 50)
        view = WindowView(config, ref, window)
        assert gate.certainly_below(view) == (not WindowView(config, ref, window).effect.passes)


def test_the_category_gate_never_skips_a_window_whose_effect_passes() -> None:
    config = DEFAULT_SIGNALS["finish_reason"]
    ref = CategoricalReference({"stop": 950, "length": 40, "content_filter": 10})
    rng = np.random.default_rng(10)
    gate = EffectGate(config, ref)
    window = SignalWindow(SignalKind.CATEGORICAL, 500)
    said, close = Counter[bool](), 0
    for i, share in enumerate(np.concatenate((np.linspace(0.04, 0.2, 80),
                                              np.linspace(0.2, 0.0, 80)))):
        cats = np.where(rng.random(50) < share, "length",
                        np.where(rng.random(50) < 0.02, "tool_call", "stop")).tolist()
        window.extend(cats, ["e"] * 50, [i] * 50)
        below = gate.certainly_below(WindowView(config, ref, window))
        effect = WindowView(config, ref, window).effect
        assert not (below and effect.passes), (i, effect)
        said[below] += 1
        close += abs(effect.size / config.min_effect - 1) < 0.05
        assert below or effect.size > config.min_effect * 0.999
    assert said[True] > 20 and said[False] > 20 and close > 3, (said, close)


@pytest.mark.parametrize("overrides", [
    {"test_every": 1, "cooldown_events": 0},  # a round after every value; alarms never silenced
    {"test_every": 7, "window_size": 64, "min_window": 64, "cooldown_events": 40},
    {"test_every": 300, "cooldown_events": 500},  # rounds further apart than the window is long
])
def test_odd_settings_batches_match_one_by_one(overrides: dict[str, Any]) -> None:
    s = settings(**overrides)
    events = stream(1800, 21)
    ref = StreamMonitor(s, KEY)
    mon = StreamMonitor(s, KEY)
    expected = one_by_one(ref, events)
    got = batched(mon, events, np.random.default_rng(21))
    assert len(expected) >= 5
    assert same(got, expected)
    assert same(mon.state_dict(), ref.state_dict())
