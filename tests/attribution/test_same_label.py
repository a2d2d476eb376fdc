"""The same-label random baseline: k random examples of the queries' own label, removed and
retrained beside k random ones (a perfect class identifier's QLD)."""

from __future__ import annotations

import pytest
import torch

from driftscope_llm.attribution.counterfactual import (
    SAME_LABEL,
    Retrainer,
    qld,
    qld_rows,
    same_label_ids,
)
from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.eval.suite import same_label_matrix
from driftscope_llm.attribution.eval.tasks import make_task


class LinearRetrainer:
    """Pure-logic fake: a query's loss = 5 − Σ weight of the kept examples (+ seed noise)."""

    def __init__(self, weights: list[float]) -> None:
        self.weights = weights

    def losses(self, corpus, queries, seed):  # type: ignore[no-untyped-def]
        kept = {int(e.id) for e in corpus}
        return [5.0 - sum(self.weights[i] for i in kept) + 0.001 * seed for _ in queries]


def _setup() -> tuple[list[Example], list[Example], LinearRetrainer]:
    """40 examples; 0-9 are label a, the rest b; 0-4 teach the queries (weight 2), the rest
    weigh U[0, 0.1)."""
    corpus = [Example(str(i), f"p{i}", f"r{i}", label="a" if i < 10 else "b")
              for i in range(40)]
    queries = [Example(f"q{j}", "p", "r", label="a") for j in range(3)]
    w = (torch.rand(40, generator=torch.Generator().manual_seed(0)) * 0.1).tolist()
    for i in range(5):
        w[i] = 2.0
    return corpus, queries, LinearRetrainer(w)


def test_both_baselines_sit_beside_each_method() -> None:
    corpus, queries, fake = _setup()
    rows = qld_rows(fake, corpus, queries, {"best": [0, 1, 2, 3, 4], "worst": [35, 36, 37, 38,
                                                                              39]},
                    seeds=(0, 1, 2), same_label=list(range(10)))
    assert set(rows) == {"best", "worst", "random", SAME_LABEL}
    assert rows["random"].vs_random.mean == 0.0 and rows["random"].vs_random.hi == 0.0
    assert rows[SAME_LABEL].vs_same_label is not None
    assert rows[SAME_LABEL].vs_same_label.mean == 0.0
    # half the label's examples teach, 5 of 40 overall: the class identifier beats random…
    assert rows[SAME_LABEL].vs_random.mean > 1.0
    assert rows[SAME_LABEL].rise.mean > rows["random"].rise.mean
    # …and removing exactly the teachers beats the class identifier
    best = rows["best"].vs_same_label
    assert best is not None and best.lo > 2.0
    worst = rows["worst"].vs_same_label
    assert worst is not None and worst.hi < 0
    # the classic QLD is unchanged by the new baseline
    classic = qld(fake, corpus, queries, {"best": [0, 1, 2, 3, 4]}, seeds=(0, 1, 2))
    assert classic["best"] == rows["best"].vs_random


def test_same_label_ids_take_the_queries_label_else_the_top_k_majority() -> None:
    corpus, queries, _ = _setup()
    label, ids = same_label_ids(corpus, queries, ["12", "13", "14"], seed=0)  # type: ignore[misc]
    assert label == "a" and len(ids) == 3 and all(int(i) < 10 for i in ids)
    unlabelled = [Example("x", "p", "r")]
    label, ids = same_label_ids(corpus, unlabelled, ["12", "13", "3"], seed=0)  # type: ignore[misc]
    assert label == "b" and all(int(i) >= 10 for i in ids)
    assert same_label_ids([Example(e.id, e.prompt, e.response) for e in corpus], unlabelled,
                          ["1"]) is None
    assert same_label_ids(corpus, queries, ["1"], seed=4) == same_label_ids(corpus, queries,
                                                                            ["1"], seed=4)


def test_same_label_matrix_is_a_perfect_class_identifier() -> None:
    from driftscope_llm.attribution.eval.evaluate import query_metrics

    mat = same_label_matrix(["a", "b"], ["a", "b", "a", "b", "b"], seed=0)
    metrics = query_metrics(mat, ["a", "b"], ["a", "b", "a", "b", "b"])
    assert metrics == [(1.0, 1.0, 1.0), (1.0, 1.0, 1.0)]


@pytest.mark.slow
def test_on_a_planted_task_the_same_label_baseline_raises_the_loss_more_than_random(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    """trigger: 12 of 144 examples teach the behaviour; removing 6 of them (random within the
    label) must hurt the triggered queries more than removing 6 random examples."""
    from driftscope_llm.attribution.tinymodel import build_tiny_model

    task = make_task("trigger", 0)
    words = [t for q in task.queries for t in (q.prompt, q.response)]
    tiny = build_tiny_model(task.corpus, tmp_path / "m", layers=1, dim=32, extra_texts=words,
                            epochs=6)
    pool = [i for i, e in enumerate(task.corpus) if e.label == "trigger"]
    queries = [q for q in task.queries if q.label == "trigger"][:6]
    rows = qld_rows(Retrainer(tiny.model_dir, epochs=6), task.corpus, queries, {},
                    seeds=(0,), same_label=pool, baseline_size=6)
    assert rows[SAME_LABEL].vs_random.lo > 0.05, rows[SAME_LABEL]


@pytest.mark.slow
def test_retraining_verification_reports_the_same_label_arm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """verify.mode = retrain on a labelled corpus: a fourth retrain without k random examples
    of the queries' label, typed in the report; an unlabelled corpus gets no such arm."""
    from driftscope_llm.attribution.counterfactual import verify_by_retraining
    from driftscope_llm.attribution.tinymodel import build_tiny_model
    from driftscope_llm.services.store.attribution_report import Verification

    task = make_task("trigger", 0)
    words = [t for q in task.queries for t in (q.prompt, q.response)]
    tiny = build_tiny_model(task.corpus, tmp_path / "m", lora=True, layers=1, dim=16,
                            extra_texts=words, epochs=3)
    top = [e.id for e in task.corpus if e.label == "trigger"][:4]
    queries = [q for q in task.queries if q.label == "trigger"][:3]
    out = verify_by_retraining(tiny.model_dir, tiny.adapter_dir, task.corpus, top, queries,
                               epochs=3, lr=1e-2)
    v = Verification.model_validate(out)
    assert v.settings["same_label"] == "trigger"
    assert v.same_label is not None and len(v.same_label.ids) == 4
    assert {e.label for e in task.corpus if e.id in set(v.same_label.ids)} == {"trigger"}
    assert v.same_label.effect == pytest.approx(v.loglik_before - v.same_label.loglik_after)
    bare = [Example(e.id, e.prompt, e.response) for e in task.corpus]
    plain = [Example(q.id, q.prompt, q.response) for q in queries]
    unlabelled = verify_by_retraining(tiny.model_dir, tiny.adapter_dir, bare, top, plain,
                                      epochs=1, lr=1e-2)
    assert "same_label" not in unlabelled and unlabelled["settings"]["same_label"] is None
