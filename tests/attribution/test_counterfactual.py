"""QLD and LDS: the arithmetic on a retrainer whose answer is known, and one real retrain."""

from __future__ import annotations

import pytest
import torch

from driftscope_llm.attribution.counterfactual import Retrainer, lds, qld
from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.eval.tasks import make_task
from driftscope_llm.attribution.stats import bootstrap_mean


class LinearRetrainer:
    """Pure-logic fake: a query's loss = 5 − Σ weight of the kept examples (+ seed noise)."""

    def __init__(self, weights: dict[str, list[float]]) -> None:
        self.weights = weights  # query id -> weight per corpus example id index

    def losses(self, corpus, queries, seed):
        kept = {int(e.id) for e in corpus}
        noise = 0.001 * seed
        return [5.0 - sum(self.weights[q.id][i] for i in kept) + noise for q in queries]


def _setup():
    corpus = [Example(str(i), f"p{i}", f"r{i}") for i in range(40)]
    queries = [Example(f"q{j}", "p", "r") for j in range(3)]
    gen = torch.Generator().manual_seed(0)
    w = torch.rand(3, 40, generator=gen)
    w[:, :5] += 2.0  # examples 0-4 teach every query
    weights = {q.id: w[j].tolist() for j, q in enumerate(queries)}
    return corpus, queries, w, LinearRetrainer(weights)


def test_lds_is_one_for_the_true_weights_and_near_zero_for_noise() -> None:
    corpus, queries, w, fake = _setup()
    noise = torch.rand(3, 40, generator=torch.Generator().manual_seed(1))
    out = lds(fake, corpus, queries, {"true": w, "noise": noise}, subsets=32)
    assert out["true"].lo == pytest.approx(1.0)
    assert out["noise"].hi < 0.6


def test_qld_rewards_removing_the_examples_that_teach() -> None:
    corpus, queries, _, fake = _setup()
    out = qld(fake, corpus, queries, {"best": [0, 1, 2, 3, 4], "worst": list(range(35, 40))},
              seeds=(0, 1))
    assert out["best"].lo > 1.5  # each removed teacher adds >= 2 to the loss, random ~0.5-1
    assert out["worst"].hi < out["best"].lo


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_n() -> None:
    small = bootstrap_mean([0.0, 1.0] * 5)
    large = bootstrap_mean([0.0, 1.0] * 200)
    assert small.lo <= small.mean <= small.hi
    assert (large.hi - large.lo) < (small.hi - small.lo)


@pytest.mark.slow
def test_real_retrain_without_the_trigger_examples_forgets_the_trigger(tmp_path) -> None:
    from driftscope_llm.attribution.tinymodel import build_tiny_model

    task = make_task("trigger", 0)
    words = [t for q in task.queries for t in (q.prompt, q.response)]
    tiny = build_tiny_model(task.corpus, tmp_path / "m", extra_texts=words, epochs=6)
    retrainer = Retrainer(tiny.model_dir, epochs=6)
    trig = [i for i, e in enumerate(task.corpus) if e.label == "trigger"]
    out = qld(retrainer, task.corpus, task.queries[:6], {"trigger": trig}, seeds=(0,))
    assert out["trigger"].lo > 0.5  # nats/token: the behaviour is gone without its examples


@pytest.mark.slow
def test_retraining_verification_supports_the_true_examples_on_lora(tmp_path) -> None:
    from driftscope_llm.attribution.counterfactual import verify_by_retraining
    from driftscope_llm.attribution.tinymodel import build_tiny_model
    from driftscope_llm.services.store.attribution_report import Verification

    task = make_task("trigger", 0)
    words = [t for q in task.queries for t in (q.prompt, q.response)]
    tiny = build_tiny_model(task.corpus, tmp_path / "m", lora=True, extra_texts=words, epochs=6)
    top = [e.id for e in task.corpus if e.label == "trigger"]
    out = verify_by_retraining(tiny.model_dir, tiny.adapter_dir, task.corpus, top,
                               task.queries[:6], epochs=6, lr=1e-2, device="cpu")
    report = Verification.model_validate(out)  # the worker stores exactly this
    assert report.method == "lora_retrain" and report.supports_attribution
    assert report.top_k.effect > 0.1 > report.random.effect  # measured 0.17 vs -0.02
    with pytest.raises(ValueError, match="LoRA adapter"):
        verify_by_retraining(tiny.model_dir, None, task.corpus, top, task.queries[:1], epochs=1,
                             lr=1e-2)
