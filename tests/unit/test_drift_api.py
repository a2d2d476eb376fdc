"""The drift package's contract: settings, monitor life cycle, exact state, snapshots, anomalies."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

import driftscope_llm.services.drift as drift
from benchmarks.scenarios import Change, generate, make_world
from driftscope_llm.services.drift import (
    DEFAULT_SIGNALS,
    DriftSettings,
    Observation,
    ReferenceSnapshot,
    SignalConfig,
    SignalKind,
    StreamKey,
    StreamMonitor,
    split_budget,
)
from driftscope_llm.services.errors import ConfigError, StateMismatchError

KEY = StreamKey("m", "v1", "chat")
WORLD = make_world(0)


def small_settings(**kw: object) -> DriftSettings:
    # small streams: the embedding signal's own larger reference minimum is lifted too
    emb = DEFAULT_SIGNALS["embedding"].model_copy(update={"min_reference_values": None})
    base: dict[str, object] = {"reference_size": 600, "min_reference_values": 100,
                               "window_size": 300, "cooldown_events": 300,
                               "signals": {**DEFAULT_SIGNALS, "embedding": emb}}
    base.update(kw)
    return DriftSettings.model_validate(base)


def run(mon: StreamMonitor, events: list[Observation]) -> list[dict[str, object]]:
    return [a.to_dict() for o in events for a in mon.observe(o)]


def test_public_surface() -> None:
    assert set(drift.__all__) == {
        "DEFAULT_SIGNALS", "Anomaly", "Budget", "Detector", "DetectorContext", "DriftSettings",
        "EffectUnit", "Finding", "MonitorSummary", "Observation", "ObservationBatch",
        "ReferenceSnapshot", "SequentialDetector", "SignalConfig", "SignalKind", "SignalSummary",
        "SignalValue", "StreamKey", "StreamMonitor",
        "WindowDetector", "available_detectors", "register_detector", "split_budget"}
    for name in drift.__all__:
        assert getattr(drift, name) is not None


def test_default_settings_cover_the_collector_signals() -> None:
    s = DriftSettings()
    assert set(s.signals) == {
        "logprob_mean", "logprob_min", "low_logprob_share", "entropy_mean", "confidence",
        "length_chars", "length_tokens", "latency_ms", "refusal", "finish_reason", "embedding"}
    assert s.max_false_alarms_per_100k == 1.0
    assert s.signals["refusal"].kind is SignalKind.BOOLEAN
    assert s.signals["refusal"].min_effect == 0.02


def test_budget_split_adds_up_to_the_model_budget() -> None:
    s = DriftSettings(streams_per_event=2)
    budgets = split_budget(s)
    assert len(budgets) == sum(len(c.detectors) for c in s.signals.values())
    total = sum(b.per_event for b in budgets.values()) * s.streams_per_event
    assert total == pytest.approx(s.max_false_alarms_per_100k / 100_000)
    for b in budgets.values():
        assert b.alpha == pytest.approx(b.per_event * s.test_every)
        assert b.arl == pytest.approx(1 / b.per_event)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_settings_from_file_round_trip(tmp_path: Path, suffix: str) -> None:
    s = small_settings(seed=7)
    data = s.model_dump(mode="json")
    p = tmp_path / f"drift{suffix}"
    p.write_text(json.dumps(data))  # JSON is valid YAML too
    loaded = DriftSettings.from_file(p)
    assert loaded == s
    assert loaded.fingerprint() == s.fingerprint()
    assert small_settings(seed=8).fingerprint() != s.fingerprint()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("window_size: -3\n", "window_size"),
        ("signals:\n  x:\n    kind: continuous\n    detectors: [nope]\n    min_effect: 0.1\n",
         "signals.x.detectors"),
        ("signals:\n  x:\n    kind: boolean\n    detectors: [ks]\n    min_effect: 0.1\n",
         "signals.x.detectors"),
        ("signals:\n  x:\n    kind: continuous\n    detectors: [ks]\n    min_effect: 0\n",
         "signals.x.min_effect"),
        ("bogus_key: 1\n", "bogus_key"),
    ],
)
def test_bad_settings_name_path_and_field(tmp_path: Path, text: str, field: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        DriftSettings.from_file(p)
    assert info.value.path == str(p)
    assert info.value.field == field


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        DriftSettings.from_file(tmp_path / "missing.yaml")
    assert info.value.path == str(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError):
        DriftSettings.from_file(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError):
        DriftSettings.from_file(listy)


def test_reference_phase_then_monitoring() -> None:
    s = small_settings()
    mon = StreamMonitor(s, KEY)
    events = generate(WORLD, 700, seed=1)
    assert run(mon, events[:599]) == []
    assert not mon.is_reference_ready
    assert mon.reference_snapshot() is None
    run(mon, events[599:700])
    assert mon.is_reference_ready
    summ = mon.summary()
    as_json = json.loads(json.dumps(summ.to_dict()))
    assert as_json["signals"]["logprob_mean"]["state"] == "monitoring"
    sig = summ.signals["logprob_mean"]
    assert sig.state == "monitoring" and sig.reference is not None
    assert sig.reference["n"] == 600
    assert sig.reference_level == sig.reference["mean"]
    assert set(sig.detectors) == {"ks", "cusum"}
    threshold = sig.detectors["cusum"].threshold
    assert threshold is not None and math.isfinite(threshold)


def test_state_round_trip_is_exact_at_every_stage() -> None:
    s = small_settings()
    events = generate(WORLD, 3000, seed=2, change=Change("confidence", 1800, -1.0))
    mon = StreamMonitor(s, KEY)
    raised = []
    for cut in (250, 900, 1850, 2300):
        done = mon.n_events
        raised += run(mon, events[done:cut])
        restored = StreamMonitor.from_state(s, json.loads(json.dumps(mon.state_dict())))
        assert json.dumps(restored.state_dict()) == json.dumps(mon.state_dict())
        tail = events[cut:cut + 400]
        copy = StreamMonitor.from_state(s, json.loads(json.dumps(mon.state_dict())))
        assert run(copy, tail) == run(restored, tail)
        # go on from a fresh restore: the round trip must lose nothing
        mon = StreamMonitor.from_state(s, json.loads(json.dumps(mon.state_dict())))
    raised += run(mon, events[2300:])
    straight = run(StreamMonitor(s, KEY), events)
    assert raised == straight  # stopped and restored four times, the same anomalies
    assert straight and {a["signal"] for a in straight} >= {"logprob_mean"}
    assert min(int(a["event_index"]) for a in straight) >= 1800  # none before the change


def test_restored_monitor_raises_the_same_anomalies() -> None:
    s = small_settings()
    events = generate(WORLD, 2600, seed=3, change=Change("refusal", 900, 0.2))
    a = StreamMonitor(s, KEY)
    run(a, events[:800])
    b = StreamMonitor.from_state(s, json.loads(json.dumps(a.state_dict())))
    out_a, out_b = run(a, events[800:]), run(b, events[800:])
    assert out_a and out_a == out_b
    assert a.summary() == b.summary()


def test_state_under_other_settings_is_refused() -> None:
    mon = StreamMonitor(small_settings(), KEY)
    run(mon, generate(WORLD, 50, seed=4))
    state = mon.state_dict()
    with pytest.raises(StateMismatchError):
        StreamMonitor.from_state(small_settings(window_size=301), state)
    with pytest.raises(StateMismatchError):
        StreamMonitor.from_state(small_settings(), {**state, "format": 99})
    with pytest.raises(StateMismatchError):
        StreamMonitor.from_state(small_settings(), {**state, "signals": {"refusal": {}}})


def test_snapshot_seeds_a_new_version() -> None:
    s = small_settings()
    old = StreamMonitor(s, KEY)
    run(old, generate(WORLD, 700, seed=5))
    snap = old.reference_snapshot()
    assert snap is not None and snap.source == KEY
    snap2 = ReferenceSnapshot.from_dict(json.loads(json.dumps(snap.to_dict())))
    new = StreamMonitor(s, StreamKey("m", "v2", "chat"), reference=snap2)
    assert new.is_reference_ready
    out = run(new, generate(WORLD, 1200, seed=6, change=Change("confidence", 200, -1.5)))
    assert any(a["signal"] == "logprob_mean" for a in out)
    assert all(a["event_index"] >= 200 for a in out)  # no alarm before the change


def test_snapshot_with_other_embedding_settings_is_refused() -> None:
    s = small_settings()
    old = StreamMonitor(s, KEY)
    run(old, generate(WORLD, 700, seed=7, embed_rate=0.5))
    snap = old.reference_snapshot()
    assert snap is not None and "embedding" in snap.signals
    with pytest.raises(StateMismatchError):
        StreamMonitor(small_settings(embedding_clusters=5), KEY, reference=snap)
    wrong_kind = ReferenceSnapshot({"refusal": snap.signals["logprob_mean"]}, 10)
    with pytest.raises(StateMismatchError):
        StreamMonitor(s, KEY, reference=wrong_kind)


#: The value rules of ``drift.reference`` (its module docstring), written out per odd value:
#: (value, what a continuous signal counts it as).
ODD_CONTINUOUS: list[tuple[object, str]] = [
    (math.nan, "non_finite"), (math.inf, "non_finite"), (-math.inf, "non_finite"),
    (1e300, "non_finite"), (None, "missing"), ("x", "invalid"), (True, "invalid"),
    ([1.0], "invalid"), (np.float32(1.5), "observed"), (np.int64(3), "observed")]
ODD_BOOLEAN: list[tuple[object, str]] = [
    (True, "observed"), (False, "observed"), (1, "observed"), (0, "observed"), (2, "invalid"),
    ("yes", "invalid"), (None, "missing"), (np.bool_(True), "observed"), (0.5, "invalid")]
ODD_CATEGORICAL: list[tuple[object, str]] = [
    ("stop", "observed"), (3, "observed"), (None, "missing"), (4.5, "invalid"),
    (True, "invalid")]


def test_odd_values_are_counted_not_raised() -> None:
    """Every odd value lands in the count its kind's rule names: the counts are exact."""
    s = small_settings(reference_size=40, min_reference_values=20, window_size=40,
                       min_window=10, test_every=5)
    mon = StreamMonitor(s, KEY)
    rng = np.random.default_rng(0)
    want: dict[str, dict[str, int]] = {}

    def pick(signal: str, table: list[tuple[object, str]], i: int) -> object:
        value, outcome = table[i % len(table)]
        counts = want.setdefault(signal, dict.fromkeys(
            ("observed", "missing", "non_finite", "invalid"), 0))
        counts[outcome] += 1
        return value

    for i in range(400):
        if i % 11 == 0:
            emb: object = np.full(8, np.nan)
        elif i % 7 == 0:
            emb = rng.normal(size=5)  # wrong dimension: the first embedding set it to 8
        else:
            emb = rng.normal(size=8).astype(np.float32)
        values = {
            "logprob_mean": (pick("logprob_mean", ODD_CONTINUOUS, i // 3) if i % 3 == 0
                             else pick("logprob_mean", [(float(rng.normal()), "observed")], 0)),
            "refusal": pick("refusal", ODD_BOOLEAN, i),
            "finish_reason": pick("finish_reason", ODD_CATEGORICAL, i),
            "embedding": emb if i else rng.normal(size=8),
            "not_a_signal": 1.0,
        }
        mon.observe(Observation(str(i), float(i), values))  # type: ignore[arg-type]
    c = mon.counts
    for signal, counts in want.items():
        assert {k: c[signal][k] for k in counts} == counts, signal
    nan_rows = len(range(0, 400, 11)) - 1  # row 0 carries the first, valid embedding
    wrong_dim = sum(1 for i in range(1, 400) if i % 7 == 0 and i % 11)
    assert (c["embedding"]["non_finite"], c["embedding"]["invalid"]) == (nan_rows, wrong_dim)
    assert c["embedding"]["observed"] == 400 - nan_rows - wrong_dim
    assert c["latency_ms"]["observed"] == 0  # never sent: stays collecting
    assert mon.summary().signals["latency_ms"].state == "collecting"
    json.dumps(mon.state_dict())


def test_constant_reference_turns_detectors_off() -> None:
    s = small_settings(reference_size=100, min_reference_values=50, window_size=50,
                       min_window=10, test_every=10)
    mon = StreamMonitor(s, KEY)
    for i in range(600):
        mon.observe(Observation(str(i), float(i), {"confidence": 1.0 if i < 300 else 0.5}))
    dets = mon.summary().signals["confidence"].detectors
    assert dets["cusum"].disabled == "degenerate_reference"


def test_cooldown_spaces_alarms_of_a_continuing_drift() -> None:
    s = small_settings(cooldown_events=400)
    mon = StreamMonitor(s, KEY)
    out = run(mon, generate(WORLD, 4000, seed=8, change=Change("confidence", 700, -2.0)))
    by_pair: dict[tuple[object, object], list[int]] = {}
    for a in out:
        by_pair.setdefault((a["signal"], a["detector"]), []).append(int(a["event_index"]))
    assert len(by_pair[("logprob_mean", "cusum")]) >= 3  # the drift continues: re-raised
    for idx in by_pair.values():
        assert all(b - a > 400 for a, b in itertools.pairwise(idx))


def test_anomalies_name_signal_detector_threshold_and_exemplars() -> None:
    s = small_settings()
    events = generate(WORLD, 2000, seed=9, change=Change("confidence", 800, -1.5))
    mon = StreamMonitor(s, KEY)
    raised = [a for o in events for a in mon.observe(o)]
    first = next(a for a in raised if a.signal == "logprob_mean")
    assert first.detector in {"cusum", "ks"}
    assert first.statistic >= first.threshold
    assert first.effect_size >= s.signals["logprob_mean"].min_effect
    assert first.direction == "decrease"
    assert len(first.exemplars) == s.n_exemplars
    values = {o.event_id: o.values["logprob_mean"] for o in events}
    ex = [values[e] for e in first.exemplars]
    assert max(ex) < -0.45  # the lowest-logprob outputs of the drifted window
    d = first.to_dict()
    json.dumps(d)
    assert d["model"] == "m" and d["segment"] == "chat" and d["event_id"] == first.event_id


def test_refusal_exemplars_are_refusals() -> None:
    s = small_settings()
    events = generate(WORLD, 3000, seed=10, change=Change("refusal", 800, 0.25))
    mon = StreamMonitor(s, KEY)
    raised = [a for o in events for a in mon.observe(o) if a.signal == "refusal"]
    assert raised
    refused = {o.event_id for o in events if o.values["refusal"]}
    assert raised[0].exemplars and set(raised[0].exemplars) <= refused
    assert raised[0].direction == "increase"


def test_user_added_boolean_signal() -> None:
    s = small_settings(signals={"jailbreak": SignalConfig(
        kind=SignalKind.BOOLEAN, detectors=("two_proportion", "bernoulli_cusum"),
        min_effect=0.05)})
    mon = StreamMonitor(s, KEY)
    rng = np.random.default_rng(1)
    out = []
    for i in range(3000):
        p = 0.05 if i < 1500 else 0.3
        out += mon.observe(Observation(str(i), float(i), {"jailbreak": bool(rng.random() < p)}))
    assert out and all(a.signal == "jailbreak" and a.event_index >= 1500 for a in out)


def test_settings_example_in_the_docs_is_valid_and_shows_the_defaults(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "drift.md").read_text()
    block = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    p = tmp_path / "drift.yaml"
    p.write_text(block)
    loaded = DriftSettings.from_file(p)
    defaults = DriftSettings()
    for name in DriftSettings.model_fields:
        if name != "signals":
            assert getattr(loaded, name) == getattr(defaults, name), name
    for name, cfg in loaded.signals.items():
        assert cfg == defaults.signals[name], name


def test_a_new_detector_is_one_registered_class() -> None:
    from typing import Any, ClassVar

    from driftscope_llm.services.drift import (
        DetectorContext,
        Finding,
        SequentialDetector,
        register_detector,
    )
    from driftscope_llm.services.errors import DetectorError

    @register_detector("test_threshold")
    class Threshold(SequentialDetector):
        """Raises when a value exceeds the reference maximum by the minimum effect."""

        kinds: ClassVar[frozenset[SignalKind]] = frozenset({SignalKind.CONTINUOUS})

        @classmethod
        def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
            ref = ctx.reference
            assert isinstance(ref, drift.reference.ContinuousReference)
            return {"disabled": None, "limit": float(ref.values[-1]) + ctx.config.min_effect}

        def update(self, value: Any, index: int) -> Finding | None:
            if value <= self.calibration["limit"]:
                return None
            return Finding(statistic=value, threshold=self.calibration["limit"], p_value=None,
                           effect_size=value, effect_unit="value", direction="increase")

    try:
        s = small_settings(signals={"x": SignalConfig(kind=SignalKind.CONTINUOUS,
                                                      detectors=("test_threshold",),
                                                      min_effect=1.0)})
        mon = StreamMonitor(s, KEY)
        out = [a for i in range(700) for a in mon.observe(
            Observation(str(i), float(i), {"x": 50.0 if i == 650 else 0.5}))]
        assert [(a.detector, a.event_index) for a in out] == [("test_threshold", 650)]
        with pytest.raises(DetectorError):
            register_detector("test_threshold")(type("Other", (Threshold,), {}))
    finally:  # leave the registry as the other tests expect it
        drift.registry._REGISTRY.pop("test_threshold", None)
    assert "test_threshold" not in drift.available_detectors()
