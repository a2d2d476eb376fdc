"""The drift benchmark's pieces on short streams (the full run is
`python -m benchmarks.drift_benchmark --markdown`, table in docs/drift.md)."""

from __future__ import annotations

import argparse
import math

import pytest
from scipy import stats

from benchmarks.drift_benchmark import (
    BASELINES,
    LABELS,
    RunResult,
    Task,
    bernoulli_kl,
    lorden_bound,
    markdown,
    matched_alpha,
    poisson_upper,
    run_task,
    scenarios,
)
from benchmarks.scenarios import Change, generate, make_world
from driftscope_llm.services.drift import Observation

LENGTH, CHANGE_AT = 6000, 3000


def _rate(events: list[Observation]) -> float:
    return sum(bool(o.values["refusal"]) for o in events) / len(events)


def test_scenario_generator_plants_its_changes() -> None:
    w = make_world(0)
    before = generate(w, 4000, 1)
    after = generate(w, 4000, 1, Change("refusal", 0, 0.3))
    assert _rate(before) < 0.05 < 0.2 < _rate(after)
    longer = generate(w, 4000, 1, Change("length", 2000, 1.3))
    tokens = [float(o.values["length_tokens"]) for o in longer]  # type: ignore[arg-type]
    assert sum(tokens[2000:]) / sum(tokens[:2000]) > 1.2
    embedded = [o for o in before if o.values["embedding"] is not None]
    assert 0.2 < len(embedded) / len(before) < 0.3


def test_every_planted_scenario_changes_something_and_no_drift_has_no_change() -> None:
    scen = {s.name: s for s in scenarios(CHANGE_AT)}
    assert scen["no drift"].change is None
    assert sum(s.change is not None for s in scen.values()) == len(scen) - 1
    assert {s.route for s in scen.values()} >= {None, "billing"}  # segment-only changes too


@pytest.mark.slow
def test_default_pipeline_catches_an_abrupt_drop_as_one_incident() -> None:
    """An abrupt one-std confidence drop on the default pipeline: caught within 600 model events
    of the change, one incident; the same stream without the change raises no alarm."""
    scen = {s.name: s for s in scenarios(CHANGE_AT)}
    hit = run_task(Task(scen["confidence drop (abrupt)"], 0, LENGTH, CHANGE_AT))
    delay = hit.first["driftscope"]
    assert delay is not None and 0 <= delay < 600, hit.first
    assert hit.incidents == 1
    quiet = run_task(Task(scen["no drift"], 0, LENGTH, CHANGE_AT))
    assert quiet.alarms["driftscope"] == 0
    assert quiet.first["driftscope"] is None


def test_markdown_table_has_every_label_the_budget_rows_and_the_verdict() -> None:
    scen = [s for s in scenarios(CHANGE_AT) if s.name in {"length +30%", "no drift"}]
    length_sc, nodrift = scen
    results = [
        RunResult(Task(length_sc, 0, LENGTH, CHANGE_AT), first={
            "driftscope": 40, BASELINES[0]: 70, BASELINES[1]: None, BASELINES[2]: 30},
            incidents=1, events=LENGTH),
        RunResult(Task(nodrift, 0, LENGTH, CHANGE_AT), alarms={
            "driftscope": 0, BASELINES[0]: 3, BASELINES[1]: 12, BASELINES[2]: 0}, events=LENGTH),
    ]
    args = argparse.Namespace(length=LENGTH, change_at=CHANGE_AT, runs=1, nodrift_runs=1)
    text = markdown(results, scen, args, {"ours": 1000.0, "ours_batch": 3000.0, "adwin": 2000.0})
    for label in LABELS:
        assert label in text
    # faster than ADWIN and the α=0.05 windows, slower than the same-budget windows (30)
    assert ("| length +30% | 40 (0/1) | 1–1 | 70 (0/1) | never (1/1) | 30 (0/1) | yes | **no** |"
            in text)
    assert f"| driftscope | {LENGTH} | 0 | 0.00 | {poisson_upper(0) * 1e5 / LENGTH:.2f} |" in text
    assert "(ratios 0.50 and 1.50)" in text


def test_poisson_upper_bound_matches_the_exact_value() -> None:
    # zero events: the 95 % upper bound of a Poisson mean is -ln(0.05)
    assert poisson_upper(0) == pytest.approx(2.995732, abs=1e-6)
    assert poisson_upper(1) == pytest.approx(4.743865, abs=1e-6)


def test_matched_alpha_spends_exactly_the_budget_over_the_baselines_tests() -> None:
    # 1 false alarm per 100 000 model events; each event enters 2 streams of 11 signals, each
    # tested once per 500 values: 2 · 11 / 500 tests per event at level α
    alpha = matched_alpha()
    assert alpha * 2 * 11 / 500 == pytest.approx(1e-5)


def test_lorden_bound_is_log_arl_over_kl_in_model_events() -> None:
    # KL against an independent computation: scipy's relative entropy
    assert bernoulli_kl(0.06, 0.02) == pytest.approx(
        float(stats.entropy([0.06, 0.94], [0.02, 0.98])), rel=1e-12)
    # a stream that sees a quarter of the model's events: the model's whole budget (1 per
    # 100 000 model events) on it is an ARL of 25 000 stream events
    whole, split = lorden_bound(0.02, 0.06, 1 / 6, 0.25)
    assert whole == pytest.approx(math.log(25_000) / bernoulli_kl(0.06, 0.02) * 4)
    assert split > whole  # sharing the budget between pairs can only slow detection
