"""The evaluation harness on the generated tasks: the default method meets its target, as a
pooled lower confidence bound over seeds and both architectures, and the documented miss.

``docs/attribution.md`` states the target (Acc ≥ :data:`ACC_TARGET`, Cover ≥
:data:`COVER_TARGET`) and its tables: the default ``repsim:mean_response`` on the three tasks
(harmful, class, backdoor), GPT-2 and tiny Llama, seed 0 — where it "misses the target once:
tiny Llama, harmful, Cover 0.833 (Acc 1.0)". A single task's 20–24 queries cannot show a 0.95
rate (20 of 20 gives a one-sided 95 % lower bound of 0.86), so the target is asserted on every
query of :data:`SEEDS` × :data:`ARCHS` × tasks pooled (256 queries): the exact (Clopper-Pearson)
one-sided 95 % lower bound of Acc and the bootstrap lower bound of mean Cover (the project's
``bootstrap_mean``) must clear the targets. Each (architecture, seed) is its own slow test (under
a minute each); the pooled test reuses their runs.

Measured (this test's runs): GPT-2 seed 0 Cover 1.000 / 0.973 / 1.000, seed 1 1.000 / 0.877 /
1.000 (Acc 0.958 on class); Llama seed 0 0.833 / 0.974 / 0.950, seed 1 0.867 / 0.948 / 0.983.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from scipy import stats

from driftscope_llm.attribution.eval.tasks import TASKS, make_task
from driftscope_llm.attribution.settings import AttributionSettings
from driftscope_llm.attribution.stats import bootstrap_mean

ACC_TARGET = 0.95
COVER_TARGET = 0.90
ARCHS = ("gpt2", "llama")
SEEDS = (0, 1)
#: The documented miss (docs/attribution.md, "The default misses the target once").
DOCUMENTED_MISS = ("llama", 0, "harmful", 0.833)

#: (arch, seed) -> task -> per-query (Acc, Cover, auPRC) of the default method
_RUNS: dict[tuple[str, int], dict[str, list[tuple[float, float, float]]]] = {}


def test_tasks_are_deterministic_and_held_out() -> None:
    for name in TASKS:
        a, b = make_task(name, 0), make_task(name, 0)
        assert a == b
        assert make_task(name, 1) != a
        prompts = {e.prompt for e in a.corpus}
        assert not prompts & {q.prompt for q in a.queries}
        assert {q.label for q in a.queries} <= {e.label for e in a.corpus}


def per_query(arch: str, seed: int) -> dict[str, list[tuple[float, float, float]]]:
    """Every query's metrics for the default method, exactly as ``evaluate_tasks`` computes
    them (same fine-tune, same scores; kept per query instead of averaged)."""
    if (arch, seed) in _RUNS:
        return _RUNS[(arch, seed)]
    from driftscope_llm.attribution.eval.evaluate import query_metrics, score_matrices
    from driftscope_llm.attribution.modeling import load_model
    from driftscope_llm.attribution.tinymodel import build_tiny_model, cpu_threads

    default = AttributionSettings().spec
    out = {}
    with tempfile.TemporaryDirectory() as tmp, cpu_threads(1):
        for name in TASKS:
            task = make_task(name, seed)
            tdir = Path(tmp) / name
            words = [t for q in task.queries for t in (q.prompt, q.response)]
            tiny = build_tiny_model(task.corpus, tdir / "model", arch=arch,  # type: ignore[arg-type]
                                    seed=seed, extra_texts=words, epochs=12)
            model = load_model(tiny.model_dir, tiny.adapter_dir)
            [(mat, _)] = score_matrices(model, task.corpus, task.queries, [default],
                                        workdir=tdir).values()
            out[name] = query_metrics(mat, [q.label for q in task.queries],
                                      [e.label for e in task.corpus])
    _RUNS[(arch, seed)] = out
    return out


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("arch", ARCHS)
def test_default_method_per_task(arch: str, seed: int) -> None:
    """Per task: a wide floor (a broken method lands near chance, 0.25–0.5), and the documented
    miss exactly where the docs put it."""
    runs = per_query(arch, seed)
    assert set(runs) == set(TASKS)
    for task, rows in runs.items():
        acc, cov = mean([r[0] for r in rows]), mean([r[1] for r in rows])
        assert acc >= 0.9 and cov >= 0.8, (arch, seed, task, acc, cov)
        if (arch, seed, task) == DOCUMENTED_MISS[:3]:
            assert (acc, round(cov, 3)) == (1.0, DOCUMENTED_MISS[3])  # as documented
            assert cov < COVER_TARGET


@pytest.mark.slow
def test_default_method_meets_its_target_as_a_pooled_lower_bound() -> None:
    pooled = [r for arch in ARCHS for seed in SEEDS for rows in per_query(arch, seed).values()
              for r in rows]
    n, hits = len(pooled), round(sum(r[0] for r in pooled))
    assert n == len(ARCHS) * len(SEEDS) * sum(len(make_task(t, 0).queries) for t in TASKS)
    acc_lower = float(stats.beta.ppf(0.05, hits, n - hits + 1)) if hits else 0.0
    cover = bootstrap_mean([r[1] for r in pooled])
    assert acc_lower >= ACC_TARGET, (hits, n, acc_lower)
    assert cover.lo >= COVER_TARGET, cover
