"""The evaluation harness on the generated tasks; the default method meets its target."""

from __future__ import annotations

import pytest

from driftscope_llm.attribution.evaluate import evaluate_tasks
from driftscope_llm.attribution.settings import AttributionSettings
from driftscope_llm.attribution.tasks import TASKS, make_task

ACC_TARGET = 0.95
COVER_TARGET = 0.90


def test_tasks_are_deterministic_and_held_out() -> None:
    for name in TASKS:
        a, b = make_task(name, 0), make_task(name, 0)
        assert a == b
        assert make_task(name, 1) != a
        prompts = {e.prompt for e in a.corpus}
        assert not prompts & {q.prompt for q in a.queries}
        assert {q.label for q in a.queries} <= {e.label for e in a.corpus}


@pytest.mark.slow
def test_default_method_meets_target_on_every_task(tmp_path) -> None:
    default = AttributionSettings().spec
    rows = evaluate_tasks(tmp_path, methods=[default, "gradsim:cosine"])
    assert {(r.task, r.method) for r in rows} == {
        (t, m) for t in TASKS for m in (default, "gradsim:cosine")}
    for row in rows:
        assert 0.0 <= row.auprc <= 1.0
        if row.method == default:
            assert row.acc >= ACC_TARGET, row
            assert row.cover >= COVER_TARGET, row
