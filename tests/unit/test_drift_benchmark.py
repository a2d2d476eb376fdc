"""The drift benchmark's pieces on small streams (the full run is `python -m
benchmarks.drift_benchmark`)."""

from __future__ import annotations

import argparse

from benchmarks.drift_benchmark import (
    BASELINES,
    OURS_ANY,
    Task,
    all_detector_settings,
    markdown,
    run_stream,
    scenarios,
    summarise,
)
from benchmarks.scenarios import Change, generate, make_world
from driftscope_llm.services.drift import Observation, available_detectors


def test_all_detector_settings_enable_every_detector() -> None:
    s = all_detector_settings(1.0)
    used = {d for c in s.signals.values() for d in c.detectors}
    assert used == set(available_detectors())
    assert s.max_false_alarms_per_100k == 1.0


def test_scenario_generator_plants_its_changes() -> None:
    w = make_world(0)
    before = generate(w, 4000, 1)
    after = generate(w, 4000, 1, Change("refusal", 0, 0.3))
    def rate(events: list[Observation]) -> float:
        return sum(bool(o.values["refusal"]) for o in events) / len(events)

    assert rate(before) < 0.05 < 0.2 < rate(after)
    longer = generate(w, 4000, 1, Change("length", 2000, 1.3))
    tokens = [float(o.values["length_tokens"]) for o in longer]  # type: ignore[arg-type]
    assert sum(tokens[2000:]) / sum(tokens[:2000]) > 1.2
    embedded = [o for o in before if o.values["embedding"] is not None]
    assert 0.2 < len(embedded) / len(before) < 0.3


def test_stream_run_summary_and_table() -> None:
    length, ref = 3200, 2000
    sc = scenarios(ref, length, 1)
    tasks = [Task(sc[0], 0, 0, length, 1.0), Task(sc[-1], 0, 0, length, 1.0)]
    results = [run_stream(t) for t in tasks]
    s = summarise(results, ref)
    assert s.nodrift_events == length - ref
    assert s.runs[sc[0].name] == 1
    # a one-std drop of the mean logprob is found within the 600 events after the change
    assert s.delays[(OURS_ANY, sc[0].name)][0] < 600
    text = markdown(s, sc, 1.0, {}, {}, {"ours": 1.0, "adwin": 2.0},
                    argparse.Namespace(length=length, runs=1))
    for label in (*sorted(available_detectors()), OURS_ANY, *BASELINES):
        assert label in text
    assert "| 1 | 1200 |" in text  # the budget row: budget, no-drift events
