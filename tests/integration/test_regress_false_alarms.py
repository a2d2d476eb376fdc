"""The benchmark's bound, asserted: two identical models fail the gate no more often than α allows.

Runs :func:`benchmarks.regress_false_alarms.measure` on a real fine-tuned model's generations
(a smaller pool and fewer runs than ``python -m benchmarks.regress_false_alarms``). At a level
α = 0.05 (so a broken split or an order-dependent detector shows within 80 runs), the number of
failed runs must not exceed the binomial 99.9 % quantile at α — a gate whose real false-alarm
rate were α would break this bound once in a thousand CI runs. A test that the gate catches a
real change is in ``test_regress_cli.py`` (v2 against v1).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy import stats

pytest.importorskip("torch")

from benchmarks.regress_false_alarms import make_pool, measure, suite
from driftscope_llm.services.demo.scenario import ScenarioSettings, train_versions
from driftscope_llm.services.regress.gate import GateSettings

pytestmark = pytest.mark.slow

ALPHA = 0.05
RUNS = 80


def test_identical_models_fail_no_more_often_than_the_level(tmp_path: Path) -> None:
    versions = train_versions(tmp_path, ScenarioSettings())
    probes = suite(per_route=4)
    pool = make_pool(versions.v1, probes, 24, seed=1)
    rate = measure(probes, pool, pool, runs=RUNS, samples=4,
                   settings=GateSettings(false_alarm_rate=ALPHA), seed=7)
    bound = int(stats.binom.ppf(0.999, RUNS, ALPHA))
    assert rate.failed <= bound, f"{rate.failed}/{RUNS} identical-model runs failed (bound {bound})"
