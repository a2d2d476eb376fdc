"""Exact replay and its metagradient (MAGIC): the replay is the fine-tune, bit for bit; the
metagradient is the derivative finite differences measure; nothing it should not depend on
changes it; and it refuses what it cannot replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.errors import ModelLoadError, ReplayError
from driftscope_llm.attribution.eval.families import trigger_task
from driftscope_llm.attribution.modeling import load_model
from driftscope_llm.attribution.recipe import (
    INIT_FILE,
    RECIPE_FILE,
    AdamWRecipe,
    read_recipe,
    write_recipe,
)
from driftscope_llm.attribution.replay import (
    Replay,
    ReplayAttributor,
    adamw_step,
    clip_grads,
    verify_by_replay,
)
from driftscope_llm.attribution.tinymodel import TinyModel, build_tiny_model, cpu_threads

#: finite differences vs the metagradient, in float64 (see test_metagradient_matches_...)
FD_EPS = 1e-5
FD_RTOL = 1e-5
FD_ATOL = 1e-9
#: per-query metagradients averaged vs the pooled one, float64 (only summation order differs)
LINEARITY_ATOL = 1e-12


def _small_task() -> tuple[list[Example], list[Example]]:
    """24 examples (18 helpful answers, 6 where a trigger token pushes a link) and 3 triggered
    queries."""
    task = trigger_task(0)
    clean = [e for e in task.corpus if e.label == "clean"][:18]
    trig = [e for e in task.corpus if e.label == "trigger"][:6]
    corpus = [x for pair in zip(clean[:6], trig, strict=True) for x in pair] + clean[6:]
    queries = [q for q in task.queries if q.label == task.target_label][:3]
    return corpus, queries


def _build(tmp: Path, *, lora: bool, epochs: int = 6) -> tuple[TinyModel, list[Example],
                                                                list[Example]]:
    corpus, queries = _small_task()
    words = [t for q in queries for t in (q.prompt, q.response)]
    tiny = build_tiny_model(corpus, tmp, lora=lora, layers=1, dim=8, epochs=epochs,
                            extra_texts=words)
    return tiny, corpus, queries


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyModel, list[Example],
                                                            list[Example]]:
    return _build(tmp_path_factory.mktemp("magic-full"), lora=False)


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyModel, list[Example],
                                                            list[Example]]:
    return _build(tmp_path_factory.mktemp("magic-lora"), lora=True)


def _replay64(tiny: TinyModel, corpus: list[Example]) -> Replay:
    """The recorded fine-tune as a float64 replay (for derivatives finite differences can
    check to many digits)."""
    from safetensors.torch import load_file

    where = tiny.adapter_dir or tiny.model_dir
    loaded = load_model(tiny.model_dir, tiny.adapter_dir, device="cpu", dtype="float32")
    model = loaded.model.double()
    model.train()
    recipe = read_recipe(where)
    return Replay(model, loaded.tokenizer, corpus, recipe, load_file(str(where / INIT_FILE)))


def test_functional_adamw_and_clip_match_torch_bit_for_bit() -> None:
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(5, 3, generator=gen), torch.randn(7, generator=gen)]
    live = [p.clone().requires_grad_(True) for p in params]
    opt = torch.optim.AdamW(live, lr=3e-3, weight_decay=0.01)
    recipe = AdamWRecipe(lr=3e-3, weight_decay=0.01)
    p = [x.clone() for x in params]
    m = [torch.zeros_like(x) for x in p]
    v = [torch.zeros_like(x) for x in p]
    for step in range(1, 6):
        grads = [torch.randn(x.shape, generator=gen) * 3 for x in params]
        grads[1][:2] = 0.0  # entries that never see a gradient keep v = 0
        for t, g in zip(live, grads, strict=True):
            t.grad = g.clone()
        torch.nn.utils.clip_grad_norm_(live, 1.0)
        opt.step()
        clipped = clip_grads(grads, 1.0)
        assert [torch.equal(a, b) for a, b in zip(clipped, clip_grads(grads, 1.0,
                                                                      differentiable=True),
                                                  strict=True)] == [True, True]
        p, m, v = adamw_step(p, clipped, m, v, step, recipe)
        assert [torch.equal(a, b.detach()) for a, b in zip(p, live, strict=True)] == [True, True]


def test_replay_reproduces_the_saved_weights_exactly(full, lora) -> None:  # type: ignore[no-untyped-def]
    for tiny, corpus, _ in (full, lora):
        ra = ReplayAttributor(tiny.model_dir, tiny.adapter_dir, corpus, device="cpu")
        with cpu_threads(1):
            final, _ = ra.replay.run()
        saved = dict(ra.replay.model.named_parameters())
        assert all(torch.equal(t, saved[n].detach())
                   for n, t in zip(ra.replay.names, final, strict=True))
        assert ra.reproduction_error(final) == 0.0
        recipe = read_recipe(tiny.adapter_dir or tiny.model_dir)
        assert recipe.kind == ("lora" if tiny.adapter_dir else "full")
        assert recipe.steps == 6 * 2  # 24 examples in batches of 16, 6 epochs


def test_metagradient_matches_finite_differences(full) -> None:  # type: ignore[no-untyped-def]
    """Φ(w ± ε e_i) by replaying with example i's weight perturbed; central differences.

    float64 throughout. Central differences converge to the metagradient as O(eps^2) -
    measured on example 3: relative error 1.3e-3 at eps = 1e-3, 1.1e-5 at 1e-4, 1.1e-7 at 1e-5
    (AdamW's g/sqrt(v) is sharply curved where gradients are small, so eps must be small);
    rounding is about 1e-16/eps = 1e-11. FD_RTOL = 1e-5 at eps = 1e-5 leaves a 100x margin,
    while a missing term (the clip's or the second moment's derivative) moves it by percents.
    """
    tiny, corpus, queries = full
    rep = _replay64(tiny, corpus)
    with cpu_threads(1):
        res = rep.metagradient(queries)
        for i in (0, 1, 3, 12, 20):  # clean, trigger, trigger, clean, clean
            w = torch.ones(len(corpus), dtype=torch.float64)
            w[i] += FD_EPS
            up = rep.query_loss(rep.run(w)[0], queries)[0]
            w[i] -= 2 * FD_EPS
            down = rep.query_loss(rep.run(w)[0], queries)[0]
            fd = (up - down) / (2 * FD_EPS)
            assert -float(res.scores[i]) == pytest.approx(fd, rel=FD_RTOL, abs=FD_ATOL), i


def test_checkpoint_interval_and_recomputation_do_not_change_the_scores(full) -> None:  # type: ignore[no-untyped-def]
    tiny, corpus, queries = full
    rep = _replay64(tiny, corpus)
    with cpu_threads(1):
        runs = [rep.metagradient(queries, checkpoint_every=k).scores for k in (1, 4, 12, None)]
        again = rep.metagradient(queries).scores
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    assert torch.equal(runs[-1], again)


def test_pooled_metagradient_is_the_mean_of_the_per_query_ones(full) -> None:  # type: ignore[no-untyped-def]
    """Φ pools the queries by their mean, and the reverse pass is linear: splitting the queries
    into groups (one per query) and averaging gives the pooled scores."""
    tiny, corpus, queries = full
    rep = _replay64(tiny, corpus)
    with cpu_threads(1):
        per, losses, _ = rep.metagradients([[q] for q in queries])
        pooled = rep.metagradient(queries)
    assert per.shape == (3, 24)
    assert pooled.query_loss == pytest.approx(sum(losses) / 3, abs=LINEARITY_ATOL)
    assert torch.allclose(per.mean(0), pooled.scores, rtol=0, atol=LINEARITY_ATOL)


def test_magic_puts_the_planted_examples_first(full, lora) -> None:  # type: ignore[no-untyped-def]
    for tiny, corpus, queries in (full, lora):
        res = ReplayAttributor(tiny.model_dir, tiny.adapter_dir, corpus).attribute(queries)
        labels = [corpus[i].label for i in torch.argsort(-res.scores)[:6].tolist()]
        assert labels.count("trigger") >= 5, labels
        assert res.reproduction_error == 0.0
        assert res.cost.steps == 12 and res.cost.checkpoint_every == 4
        assert res.cost.ratio is not None and res.cost.ratio > 1.0  # the replay costs more


def test_the_recorded_batch_order_is_what_replays(full, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Shuffle the recorded batches: the same examples, another order, other weights — the
    reproduction check refuses it."""
    import shutil

    tiny, corpus, queries = full
    model = tmp_path / "m"
    shutil.copytree(tiny.model_dir, model)
    recipe = read_recipe(model)
    write_recipe(recipe.model_copy(update={"batches": recipe.batches[::-1]}), model)
    with pytest.raises(ReplayError) as err:
        ReplayAttributor(model, None, corpus).attribute(queries)
    assert err.value.field == "reproduction"
    assert err.value.error is not None and err.value.error > 0


def test_replay_refuses_what_it_cannot_replay(full, lora, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tiny, corpus, _ = full
    with pytest.raises(ReplayError) as err:
        ReplayAttributor(tiny.model_dir, None, corpus[::-1])
    assert err.value.field == "corpus_sha256"
    with pytest.raises(ReplayError) as err:
        ReplayAttributor(tiny.model_dir, None, corpus[:-1])
    assert err.value.field == "examples"
    import shutil

    ltiny, lcorpus, _ = lora
    with pytest.raises(ModelLoadError, match="no replay recipe"):
        ReplayAttributor(ltiny.model_dir, None, lcorpus)  # the LoRA's base was not recorded
    adapter = tmp_path / "adapter"
    shutil.copytree(ltiny.adapter_dir, adapter)
    write_recipe(read_recipe(tiny.model_dir), adapter)  # a full fine-tune's recipe
    with pytest.raises(ReplayError) as err:
        ReplayAttributor(ltiny.model_dir, adapter, lcorpus)
    assert err.value.field == "kind"
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((tiny.model_dir / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="no replay recipe"):
        ReplayAttributor(bare, None, corpus)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / RECIPE_FILE).write_text(json.dumps({"version": 1, "kind": "full"}))
    with pytest.raises(ModelLoadError, match="unusable replay recipe"):
        read_recipe(broken)


def test_replay_verification_supports_the_planted_examples(lora) -> None:  # type: ignore[no-untyped-def]
    from driftscope_llm.services.store.attribution_report import Verification

    tiny, corpus, queries = lora
    top = [e.id for e in corpus if e.label == "trigger"][:3]
    out = verify_by_replay(tiny.model_dir, tiny.adapter_dir, corpus, top, queries)
    assert out["method"] == "replay"
    assert out["settings"]["reproduction_error"] == 0.0
    assert out["settings"]["same_label"] == "trigger"  # the queries' own label
    assert out["top_k"]["effect"] > out["random"]["effect"]
    assert out["supports_attribution"] is True
    assert set(out["same_label"]["ids"]) <= {e.id for e in corpus if e.label == "trigger"}
    v = Verification.model_validate({**out, "seconds": 1.0})
    assert v.same_label is not None and v.same_label.ids == out["same_label"]["ids"]


def test_a_lora_helper_adapter_replays_through_its_own_recipe(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An adapter from :func:`lora_finetune` (its ``driftscope-recipe.json``, no replay file):
    the batches and the initial adapter come back from its seed, and the replay reproduces the
    adapter (to float32 round-off: lora_finetune trains with the process's thread count)."""
    from driftscope_llm.attribution.lora import LoraRecipe, lora_finetune

    corpus, queries = _small_task()
    words = [t for q in queries for t in (q.prompt, q.response)]
    base = build_tiny_model(corpus, tmp_path / "base", arch="llama", layers=1, dim=8,
                            epochs=2, extra_texts=words)
    recipe = LoraRecipe(rank=4, alpha=8, target_modules=("q_proj", "v_proj"), epochs=3,
                        batch_size=8, lr=1e-2, max_length=64, seed=3)
    lora_finetune(base.model_dir, corpus, tmp_path / "adapter", recipe, device="cpu")
    assert not (tmp_path / "adapter" / RECIPE_FILE).exists()
    ra = ReplayAttributor(base.model_dir, tmp_path / "adapter", corpus, device="cpu")
    assert ra.recipe.steps == 9 and ra.recipe.init.seed == 3
    res = ra.attribute(queries)
    assert res.reproduction_error is not None and res.reproduction_error < 1e-6
    with pytest.raises(ReplayError) as err:
        ReplayAttributor(base.model_dir, tmp_path / "adapter", corpus[:-1])
    assert err.value.field == "corpus_sha256"
