"""ASTRA: invariances, stored state, and the exact inverse on a micro model.

The exact check uses the 1-layer × 8-dim GPT-2 of ``test_ekfac`` (every layer side below
``curvature_proj_dim``, so nothing is projected): each layer's full per-example gradient and its
dense empirical Fisher fit in memory, and ``(F + λI)⁻¹`` is inverted directly. ASTRA must converge
to it, and every step must bring it closer than EK-FAC's own approximation.
"""

from __future__ import annotations

import random

import pytest
import torch

from driftscope_llm.attribution.errors import IndexCorruptError, IndexError_
from driftscope_llm.attribution.index.feature_index import build_index, open_index
from driftscope_llm.attribution.methods.astra import sample_positions
from driftscope_llm.attribution.settings import AttributionSettings

from .test_ekfac import _assert_close_rel, _assert_same, _dense_grads, _scores
from .test_ekfac import micro as micro


@pytest.mark.parametrize("fisher_examples", [256, 40])
def test_invariant_to_batch_shards_and_order(gpt2_model, planted_corpus, tmp_path,
                                             fisher_examples) -> None:
    """Batch size, shard size and corpus order change nothing, also when the curvature comes
    from a sample of the corpus (40 of 60 examples)."""
    corpus, queries = planted_corpus[:60], planted_corpus[60:64]
    s = AttributionSettings(method="astra", storage_dtype="float32", astra_iterations=5,
                            astra_fisher_examples=fisher_examples)
    ref = _scores(build_index(gpt2_model, corpus, tmp_path / "a", s, batch_size=16,
                              shard_size=1000), queries)
    shuffled = corpus[:]
    random.Random(3).shuffle(shuffled)
    other = _scores(build_index(gpt2_model, shuffled, tmp_path / "b", s, batch_size=5,
                                shard_size=7), queries)
    _assert_same(ref, other)


def test_the_sample_does_not_depend_on_corpus_order(planted_corpus) -> None:
    corpus = planted_corpus[:50]
    picked = {(corpus[i].prompt, corpus[i].response) for i in sample_positions(corpus, 20)}
    reordered = corpus[::-1]
    again = {(reordered[i].prompt, reordered[i].response)
             for i in sample_positions(reordered, 20)}
    assert picked == again and len(picked) == 20
    assert sample_positions(corpus, 80) == list(range(50))


def test_state_is_stored_beside_the_index_and_checked(gpt2_model, planted_corpus,
                                                      tmp_path) -> None:
    s = AttributionSettings(method="astra", storage_dtype="float32", astra_iterations=3)
    index = build_index(gpt2_model, planted_corpus[:30], tmp_path / "i", s)
    assert index.manifest.state is not None
    assert index.manifest.state.file == "astra.safetensors"
    before = _scores(index, planted_corpus[30:32])
    reopened = open_index(tmp_path / "i", model=gpt2_model, corpus=planted_corpus[:30])
    _assert_same(before, _scores(reopened, planted_corpus[30:32]))
    with pytest.raises(IndexError_, match="does not match"):  # other settings, other features
        open_index(tmp_path / "i", model=gpt2_model, method="ekfac")
    (tmp_path / "i" / "astra.safetensors").write_bytes(b"not the factors")
    with pytest.raises(IndexCorruptError):
        open_index(tmp_path / "i", model=gpt2_model)


def _exact_and_ekfac(model, corpus, queries, index, s) -> tuple[dict, dict]:
    """Dense ``gᵀ(F + λI)⁻¹g`` and dense EK-FAC ``gᵀ(H_ekfac + λI)⁻¹g`` per (query, example)."""
    states = index.method._fitted()
    grads = _dense_grads(model, corpus, s)
    qgrads = _dense_grads(model, queries, s)
    exact = {(q.id, e.id): 0.0 for q in queries for e in corpus}
    ekfac = dict(exact)
    for j, block in enumerate(index.blocks):
        st = states[block.name]
        g = torch.stack([grads[n][j].flatten() for n in range(len(corpus))])
        fisher = g.T @ g / len(corpus)
        damping = float(st["damping"])
        inv = torch.linalg.inv(fisher + damping * torch.eye(fisher.shape[0], dtype=g.dtype))
        k = torch.kron(st["q_out"].double(), st["q_in"].double())
        approx = torch.linalg.inv(k @ torch.diag(st["scale"].double().flatten() ** -2) @ k.T)
        for qi, q in enumerate(queries):
            v, w = inv @ qgrads[qi][j].flatten(), approx @ qgrads[qi][j].flatten()
            for n, e in enumerate(corpus):
                exact[(q.id, e.id)] += float(v @ g[n])
                ekfac[(q.id, e.id)] += float(w @ g[n])
    return exact, ekfac


def _rel_error(got: dict, exact: dict) -> float:
    keys = sorted(exact)
    tg = torch.tensor([got[k] for k in keys], dtype=torch.float64)
    te = torch.tensor([exact[k] for k in keys], dtype=torch.float64)
    return float((tg - te).norm() / te.norm())


def test_astra_converges_to_the_dense_inverse_on_a_micro_model(micro, tmp_path) -> None:
    model, corpus = micro
    queries = corpus[:3]
    errors = []
    for iterations in (0, 5, 3000):
        s = AttributionSettings(method="astra", storage_dtype="float32", last_n_blocks=1,
                                astra_iterations=iterations)
        index = build_index(model, corpus, tmp_path / f"i{iterations}", s)
        got = _scores(index, queries)
        exact, ekfac = _exact_and_ekfac(model, corpus, queries, index, s)
        errors.append(_rel_error(got, exact))
    ek_error = _rel_error(ekfac, exact)
    assert ek_error > 0.05, "EK-FAC is already exact here: the test could not tell ASTRA apart"
    assert errors[1] < ek_error and errors[2] < errors[1]
    _assert_close_rel(got, exact)  # 3000 steps: the dense inverse within float32 tolerance
