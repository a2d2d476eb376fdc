"""Stream caps (issue 19, failure 2): a producer that puts a fresh value in ``model`` or
``model_version`` on every event cannot grow the collector's streams without bound."""

from __future__ import annotations

from collections import Counter

from driftscope_llm.services.collector.cardinality import OTHER, CardinalitySettings, StreamCaps

CAPS = CardinalitySettings(max_models=3, max_versions_per_model=2, max_model_versions=1000)


def test_models_past_the_cap_fold_into_other_and_are_counted() -> None:
    folds: Counter[str] = Counter()
    caps = StreamCaps(CAPS, on_fold=lambda dim: folds.update([dim]))
    seen = {caps.fold(f"m{i}", "v1") for i in range(10_000)}
    assert seen == {("m0", "v1"), ("m1", "v1"), ("m2", "v1"), (OTHER, "v1")}
    assert folds == {"model": 9_997}
    assert caps.fold("m1", "v1") == ("m1", "v1")  # admitted names stay admitted


def test_versions_past_the_cap_fold_per_model() -> None:
    folds: Counter[str] = Counter()
    caps = StreamCaps(CAPS, on_fold=lambda dim: folds.update([dim]))
    assert [caps.fold("m", f"v{i}") for i in range(5)] == [
        ("m", "v0"), ("m", "v1"), ("m", OTHER), ("m", OTHER), ("m", OTHER)]
    assert caps.fold("n", "v9") == ("n", "v9")  # another model has its own version budget
    assert folds == {"version": 3}


def test_total_streams_are_bounded_whatever_the_traffic() -> None:
    caps = StreamCaps(CAPS)
    pairs = {caps.fold(f"model-{i % 997}", f"version-{i % 1009}") for i in range(50_000)}
    assert len(pairs) <= (CAPS.max_models + 1) * (CAPS.max_versions_per_model + 1)


def test_pairs_past_the_total_cap_fold_into_other_other() -> None:
    caps = StreamCaps(CardinalitySettings(max_models=100, max_versions_per_model=100,
                                          max_model_versions=10))
    pairs = {caps.fold(f"m{i % 7}", f"v{i}") for i in range(1000)}
    assert len(pairs - {(OTHER, OTHER)}) == 10 and (OTHER, OTHER) in pairs


def test_restore_keeps_the_names_a_checkpoint_monitored() -> None:
    caps = StreamCaps(CAPS)
    caps.restore([("late", "v1"), ("late", "v2")])
    for i in range(5):
        caps.fold(f"new{i}", "v1")
    assert caps.fold("late", "v2") == ("late", "v2")
    assert caps.fold("new4", "v1") == (OTHER, "v1")
    assert caps.models == CAPS.max_models
