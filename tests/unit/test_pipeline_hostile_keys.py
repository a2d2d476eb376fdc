"""Issue 19 in the collector's pipeline (in-memory store): colliding stream keys (failure 3),
unbounded models and versions (failure 2), and a secret cut at the exemplar limit (failure 7).

On ec31e46: ``model="a|b", version="c"`` and ``model="a", version="b|c"`` shared one monitor;
10,000 distinct models made 10,000 model-level streams; and exemplar text was cut to 2,000
characters *before* redaction, so a key straddling the cut was stored partly in clear.
"""

from __future__ import annotations

import json
from collections import Counter

from driftscope_llm.services.collector.cardinality import CardinalitySettings, StreamCaps
from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.store import MemoryStore

SMALL = DriftSettings(reference_size=60, min_reference_values=20, window_size=30, min_window=10,
                      test_every=10, cooldown_events=30)


def _pipeline(caps: StreamCaps | None = None) -> Pipeline:
    from driftscope_llm.services.collector.segments import SegmentSettings

    return Pipeline(SMALL, SignalExtractor(SignalSettings()), SegmentSettings(), MemoryStore(),
                    caps=caps)


def _events(n: int, **fields: object) -> list[tuple[int, OutputEvent]]:
    out = []
    for i, e in enumerate(generate_events(StreamSpec(n=n, seed=31))):
        out.append((i, OutputEvent.model_validate({**e, **{
            k: (v(i) if callable(v) else v) for k, v in fields.items()}})))
    return out


def test_separator_in_names_gives_separate_streams() -> None:
    pipeline, state = _pipeline(), PartitionState(topic="t", partition=0)
    one = _events(40, model="a|b", model_version="c")
    other = [(40 + off, ev.model_copy(update={"model": "a", "model_version": "b|c"}))
             for off, ev in _events(40)]
    pipeline.process(state, one + other)
    keys = {(m.key.model, m.key.model_version) for m in state.monitors.values()}
    assert keys == {("a|b", "c"), ("a", "b|c")}
    assert len({sid for sid in state.monitors}) == len(state.monitors)
    per_pair = Counter((m.key.model, m.key.model_version) for m in state.monitors.values())
    assert per_pair[("a|b", "c")] == per_pair[("a", "b|c")]


def test_distinct_models_per_event_stay_within_the_caps() -> None:
    folds: Counter[str] = Counter()
    caps = StreamCaps(CardinalitySettings(max_models=5, max_versions_per_model=2,
                                          max_model_versions=8),
                      on_fold=lambda dim: folds.update([dim]))
    pipeline, state = _pipeline(caps), PartitionState(topic="t", partition=0)
    pipeline.process(state, _events(600, model=lambda i: f"req-{i}",
                                     model_version=lambda i: f"v{i % 4}"))
    pairs = {(m.key.model, m.key.model_version) for m in state.monitors.values()}
    assert len(pairs) <= 8 + 1  # the pairs cap, plus other/other
    assert {m for m, _ in pairs} - {"other"} == {f"req-{i}" for i in range(5)}
    assert sum(folds.values()) == 600 - 5  # each folded event reported once
    assert pipeline.key_for(_events(1, model="req-599")[0][1]).model == "other"


def test_a_secret_straddling_the_exemplar_cut_is_redacted_whole() -> None:
    key = "sk-" + "Q7x9" * 10  # an API key of 43 characters
    for before in (1990, 1998, 1999):
        output = "x" * before + " " + key + " and more text"
        pipeline, state = _pipeline(), PartitionState(topic="t", partition=0)
        pipeline.process(state, _events(1, output=output))
        stored = json.dumps([list(ring.values()) for ring in state.recent.values()])
        assert "sk-Q7x9" not in stored and "Q7x9Q7x9" not in stored, before
        assert all(len(o) <= 2000 for ring in state.recent.values() for _, o in ring.values())
