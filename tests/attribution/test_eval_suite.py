"""The family suite: deterministic held-out families, and a reduced run of the documented table.

The reduced run (slow marker; about 35 s on CPU: GPT-2 and tiny Llama, seeds 0 and 1) asserts
*lower* 95% bootstrap bounds pooled over queries, seeds and both architectures, never point
estimates: the default method must find the behaviour's examples in
every family it is run on (Cover) and its picks must matter more than random ones when removed
and the model retrained (QLD).
"""

from __future__ import annotations

import pytest

from driftscope_llm.attribution.eval.families import FAMILIES
from driftscope_llm.attribution.eval.suite import Config, run_suite
from driftscope_llm.attribution.eval.suite_report import suite_markdown
from driftscope_llm.attribution.eval.tasks import TASKS, make_task
from driftscope_llm.attribution.settings import AttributionSettings

#: pooled lower bounds the default must clear in the reduced run
COVER_LOWER_BOUND = 0.80
QLD_LOWER_BOUND = 0.0


def test_families_are_deterministic_held_out_and_independent_of_tasks() -> None:
    old_words = {w for name in TASKS for e in make_task(name, 0).corpus
                 for w in (e.prompt + " " + e.response).split() if len(w) > 3}
    for name in FAMILIES:
        a, b = make_task(name, 0), make_task(name, 0)
        assert a == b
        assert make_task(name, 1) != a
        assert not {e.prompt for e in a.corpus} & {q.prompt for q in a.queries}
        assert {q.label for q in a.queries} <= {e.label for e in a.corpus}
        assert a.target_label in {q.label for q in a.queries}
        words = {w for e in a.corpus for w in (e.prompt + " " + e.response).split()
                 if len(w) > 3}
        shared = words & old_words
        assert len(shared) <= 0.15 * len(words), (name, sorted(shared))  # function words


@pytest.mark.slow
def test_reduced_suite_default_clears_pooled_lower_bounds(tmp_path) -> None:
    default = AttributionSettings().spec
    # pooled over both architectures and two seeds (measured: style Cover 0.96 [0.95, 0.98],
    # QLD 0.17 [0.11, 0.22]; trigger 1.00 [1.00, 1.00], 0.38 [0.35, 0.42]; about 35 s)
    rows = run_suite(tmp_path, families=["style", "trigger"],
                     configs=[Config("gpt2", False), Config("llama", False)], seeds=[0, 1],
                     methods=[default, "random"], epochs=8, cf_seeds=[0], lds_subsets=4)
    by = {(r.family, r.method): r for r in rows}
    for family in ("style", "trigger"):
        mine, rand = by[(family, default)], by[(family, "random")]
        assert mine.cover.lo >= COVER_LOWER_BOUND, mine
        assert mine.cover.lo > rand.cover.hi
        assert mine.qld is not None and mine.qld.lo > QLD_LOWER_BOUND, mine
    table = suite_markdown(rows, 1.0)
    assert f"| style | {default} |" in table and "Wall time: 1 s." in table
