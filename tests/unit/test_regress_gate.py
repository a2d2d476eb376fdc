"""The gate's decision logic on synthetic generations (pure: no model, no service).

Generations are drawn from explicit laws, so what must pass and what must fail is known. The
false-alarm rate over many runs is measured by ``benchmarks/regress_false_alarms.py`` (and its
bound asserted in ``tests/unit/test_regress_benchmark.py``), not here.
"""

from __future__ import annotations

import math
import random

import pytest

from driftscope_llm.services.regress.errors import GateInputError
from driftscope_llm.services.regress.gate import GATE_SIGNALS, GateSettings, run_gate
from driftscope_llm.services.regress.generation import Sample
from driftscope_llm.services.regress.probes import Probe

REFUSAL = "i am unable to help with billing questions ."
PROBES = [Probe(id=f"p{i:02d}", prompt=f"question number {i} ?") for i in range(24)]


def _sample(rng: random.Random, *, refuse: float = 0.0, sure: float = 0.0,
            logprobs: bool = True) -> Sample:
    if rng.random() < refuse:
        words = REFUSAL.split()
    else:
        words = [rng.choice(("open", "settings", "billing", "then", "card", "."))
                 for _ in range(rng.randint(6, 14))]
    lps = [min(0.0, rng.gauss(-1.2 + sure, 0.6)) for _ in words] if logprobs else []
    tops = [{"a": x, "b": x - 1.0} for x in lps]
    return Sample("q", " ".join(words), lps, tops, "stop")


def _side(seed: int, n: int = 4, **kw: float | bool) -> list[list[Sample]]:
    rng = random.Random(seed)
    return [[_sample(rng, **kw) for _ in range(n)] for _ in PROBES]  # type: ignore[arg-type]


def test_same_law_passes_and_the_level_is_split_over_tested_pairs() -> None:
    result = run_gate(PROBES, _side(1), _side(2), GateSettings(false_alarm_rate=0.01))
    assert result.verdict == "pass"
    tested = [d for d in result.signals if d.decision != "not_tested"]
    assert result.pairs == sum(len(GATE_SIGNALS[d.signal].detectors) for d in tested)
    assert result.per_pair_alpha == pytest.approx(0.01 / result.pairs)
    assert not any(p.failed for p in result.probes)


def test_planted_refusals_fail_on_refusal_and_name_the_probes() -> None:
    rng = random.Random(7)
    bad = {p.id for p in PROBES[:8]}
    cand = [[_sample(rng, refuse=0.75 if p.id in bad else 0.0) for _ in range(4)]
            for p in PROBES]
    result = run_gate(PROBES, _side(1), cand, GateSettings())
    assert result.verdict == "regression"
    refusal = next(d for d in result.signals if d.signal == "refusal")
    assert refusal.decision == "regression" and refusal.direction == "increase"
    assert refusal.effect == pytest.approx(
        sum(s.output == REFUSAL for g in cand for s in g) / 96)
    assert any(x.raised for x in refusal.detectors)
    failed = {p.probe.id for p in result.probes if "refusal" in p.failed_on}
    assert failed and failed <= bad
    assert result.most_changed(1)[0].failed


def test_more_confident_candidate_is_changed_not_a_regression_unless_asked() -> None:
    base, cand = _side(1), _side(2, sure=0.8)
    result = run_gate(PROBES, base, cand, GateSettings())
    lp = next(d for d in result.signals if d.signal == "logprob_mean")
    assert lp.decision == "changed" and lp.direction == "increase"
    assert result.verdict == "pass"
    strict = GateSettings(fail_on={"logprob_mean": "any"})
    assert run_gate(PROBES, base, cand, strict).verdict == "regression"


def test_less_confident_candidate_is_a_regression() -> None:
    result = run_gate(PROBES, _side(1), _side(2, sure=-0.8), GateSettings())
    lp = next(d for d in result.signals if d.signal == "logprob_mean")
    assert (lp.decision, lp.direction, result.verdict) == ("regression", "decrease",
                                                           "regression")
    assert lp.effect is not None and lp.effect >= lp.min_effect  # type: ignore[operator]


def test_a_significant_change_below_the_minimum_effect_passes() -> None:
    # a real but small drop of confidence on many samples: significant (a lower minimum effect
    # fails it) but smaller than the default minimum, so the default gate passes it
    base, cand = _side(1, n=80), _side(2, n=80, sure=-0.04)
    result = run_gate(PROBES, base, cand, GateSettings())
    lp = next(d for d in result.signals if d.signal == "logprob_mean")
    assert lp.decision == "pass" and lp.effect is not None and lp.effect < lp.min_effect
    low = GATE_SIGNALS["logprob_mean"].model_copy(update={"min_effect": 0.05})
    strict = run_gate(PROBES, base, cand, GateSettings(signals={**GATE_SIGNALS,
                                                                "logprob_mean": low}))
    assert next(d for d in strict.signals if d.signal == "logprob_mean").decision == "regression"


def test_signals_without_values_are_not_tested_and_cost_no_level() -> None:
    result = run_gate(PROBES, _side(1, logprobs=False), _side(2, logprobs=False),
                      GateSettings())
    by = {d.signal: d for d in result.signals}
    for name in ("logprob_mean", "logprob_min", "low_logprob_share", "entropy_mean",
                 "length_tokens"):
        assert by[name].decision == "not_tested" and "needs 20" in by[name].reason
    assert result.pairs == sum(len(GATE_SIGNALS[s].detectors)
                               for s in ("length_chars", "refusal", "finish_reason"))


def test_too_few_generations_is_an_input_error() -> None:
    few = PROBES[:4]
    with pytest.raises(GateInputError) as info:
        run_gate(few, [[_sample(random.Random(0))] for _ in few],
                 [[_sample(random.Random(1))] for _ in few], GateSettings())
    assert (info.value.side, info.value.needed, info.value.got) == ("baseline", 20, 4)


def test_probe_order_does_not_change_effects_or_the_verdict() -> None:
    rng = random.Random(3)
    base = _side(1)
    cand = [[_sample(rng, refuse=0.6 if i % 3 == 0 else 0.0) for _ in range(4)]
            for i in range(len(PROBES))]
    order = list(range(len(PROBES)))
    random.Random(5).shuffle(order)
    a = run_gate(PROBES, base, cand, GateSettings())
    b = run_gate([PROBES[i] for i in order], [base[i] for i in order], [cand[i] for i in order],
                 GateSettings())
    assert a.verdict == b.verdict == "regression"
    for x, y in zip(a.signals, b.signals, strict=True):
        assert x.signal == y.signal and x.decision == y.decision
        assert (x.effect is None and y.effect is None) or math.isclose(x.effect, y.effect)  # type: ignore[arg-type]
    assert {p.probe.id: p.effects for p in a.probes} == {p.probe.id: p.effects
                                                          for p in b.probes}
