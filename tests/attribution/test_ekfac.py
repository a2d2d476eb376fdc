"""EK-FAC and TrackStar: invariances, stored state, and an exact check on a tiny model.

The exact checks use a GPT-2 of 1 layer × 8 dims, tracked without projection (every layer side
is smaller than ``curvature_proj_dim``), so each layer's full per-example gradient — computed
here independently, one example at a time through ``weight.grad`` — and its dense curvature fit
in memory and can be inverted directly.
"""

from __future__ import annotations

import random

import pytest
import torch

from driftscope_llm.attribution.errors import IndexCorruptError, IndexError_
from driftscope_llm.attribution.eval.tasks import make_task
from driftscope_llm.attribution.formatting import collate
from driftscope_llm.attribution.index.feature_index import build_index, open_index
from driftscope_llm.attribution.methods.gradients import response_loss, select_layers
from driftscope_llm.attribution.methods.trackstar import EPS_REL
from driftscope_llm.attribution.settings import AttributionSettings

from .conftest import SCORE_ATOL_FP32

#: relative tolerance of float32 scores against the float64 dense computation
EXACT_RTOL = 2e-3


def _scores(index, queries) -> dict[tuple[str, str], float]:
    res = index.query(queries, top_k=index.count)
    return {(r.query_id, h.id): h.score for r in res for h in r.results}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    keys = sorted(a)
    ta, tb = torch.tensor([a[k] for k in keys]), torch.tensor([b[k] for k in keys])
    scale = max(float(ta.abs().max()), 1.0)
    torch.testing.assert_close(ta, tb, rtol=1e-3, atol=SCORE_ATOL_FP32 * scale)


@pytest.mark.parametrize("spec", ["ekfac", "trackstar"])
def test_invariant_to_batch_shards_and_order(gpt2_model, planted_corpus, tmp_path, spec) -> None:
    corpus, queries = planted_corpus[:60], planted_corpus[60:64]
    s = AttributionSettings(method=spec, storage_dtype="float32")
    ref = _scores(build_index(gpt2_model, corpus, tmp_path / "a", s, batch_size=16,
                              shard_size=1000), queries)
    shuffled = corpus[:]
    random.Random(3).shuffle(shuffled)
    other = _scores(build_index(gpt2_model, shuffled, tmp_path / "b", s, batch_size=5,
                                shard_size=7), queries)
    _assert_same(ref, other)


def test_state_is_stored_beside_the_index_and_checked(gpt2_model, planted_corpus,
                                                      tmp_path) -> None:
    s = AttributionSettings(method="ekfac", storage_dtype="float32")
    index = build_index(gpt2_model, planted_corpus[:30], tmp_path / "i", s)
    assert index.manifest.state is not None
    assert index.manifest.state.file == "ekfac.safetensors"
    assert (tmp_path / "i" / "ekfac.safetensors").is_file()
    before = _scores(index, planted_corpus[30:32])
    reopened = open_index(tmp_path / "i", model=gpt2_model, corpus=planted_corpus[:30])
    _assert_same(before, _scores(reopened, planted_corpus[30:32]))
    with pytest.raises(IndexError_, match="does not match"):  # features differ
        open_index(tmp_path / "i", model=gpt2_model, method="trackstar")
    (tmp_path / "i" / "ekfac.safetensors").write_bytes(b"not the factors")
    with pytest.raises(IndexCorruptError):
        open_index(tmp_path / "i", model=gpt2_model)


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from driftscope_llm.attribution.modeling import load_model
    from driftscope_llm.attribution.tinymodel import build_tiny_model

    corpus = make_task("trigger", 0).corpus[:24]
    out = tmp_path_factory.mktemp("micro")
    tiny = build_tiny_model(corpus, out, layers=1, dim=8, epochs=3, seed=0)
    return load_model(tiny.model_dir, device="cpu"), corpus


def _dense_grads(model, examples, settings) -> list[list[torch.Tensor]]:
    """Per example, per tracked layer: the (out × in) weight gradient via ``weight.grad``."""
    from transformers.pytorch_utils import Conv1D

    layers = select_layers(model.model, settings, model.has_adapter)
    out = []
    for e in examples:
        batch = collate(model.tokenizer, [e], settings.max_length)
        model.model.zero_grad()
        with torch.enable_grad():
            logits = model.model(input_ids=batch.input_ids,
                                 attention_mask=batch.attention_mask).logits
            response_loss(logits, batch.labels).sum().backward()
        per = []
        for lay in layers:
            g = lay.module.weight.grad.detach().double().clone()
            per.append(g.T if isinstance(lay.module, Conv1D) else g)
        out.append(per)
    model.model.zero_grad()
    return out


def test_ekfac_matches_dense_inverse_on_a_micro_model(micro, tmp_path) -> None:
    model, corpus = micro
    s = AttributionSettings(method="ekfac", storage_dtype="float32", last_n_blocks=1)
    index = build_index(model, corpus, tmp_path / "i", s)
    queries = corpus[:3]
    got = _scores(index, queries)
    states = index.method._fitted()
    layers = [b.name for b in index.blocks]
    grads = _dense_grads(model, corpus, s)
    qgrads = _dense_grads(model, queries, s)
    exact = {(q.id, e.id): 0.0 for q in queries for e in corpus}
    for j, name in enumerate(layers):
        st = states[name]
        k = torch.kron(st["q_out"].double(), st["q_in"].double())  # vec(Q_S X Q_Aᵀ) basis
        damped = st["scale"].double().flatten() ** -2  # Λ + λ
        # EK-FAC's defining property: Λ is the exact Fisher's diagonal in the Kronecker basis
        g = torch.stack([grads[n][j].flatten() for n in range(len(corpus))])
        fisher = g.T @ g / len(corpus)
        lam = torch.diagonal(k.T @ fisher @ k)
        mean_damped = float(damped.mean())
        damping = s.ekfac_damping * mean_damped / (1 + s.ekfac_damping)
        torch.testing.assert_close(damped - damping, lam, rtol=EXACT_RTOL,
                                   atol=1e-6 * float(lam.max()))
        # the score is gᵀ (H_ekfac + λI)⁻¹ g, H_ekfac inverted densely
        inv = torch.linalg.inv(k @ torch.diag(damped) @ k.T)
        for qi, q in enumerate(queries):
            v = inv @ qgrads[qi][j].flatten()
            for n, e in enumerate(corpus):
                exact[(q.id, e.id)] += float(v @ g[n])
    _assert_close_rel(got, exact)


def test_trackstar_matches_direct_computation_on_a_micro_model(micro, tmp_path) -> None:
    model, corpus = micro
    s = AttributionSettings(method="trackstar", storage_dtype="float32", last_n_blocks=1)
    index = build_index(model, corpus, tmp_path / "i", s)
    queries = corpus[:3]
    grads = _dense_grads(model, corpus, s)
    qgrads = _dense_grads(model, queries, s)
    nlay = len(grads[0])
    scales = []
    for j in range(nlay):
        root = torch.stack([grads[n][j] for n in range(len(corpus))]).pow(2).mean(0).sqrt()
        scales.append(1.0 / (root + EPS_REL * float(root.mean())))

    def feat(per: list[torch.Tensor]) -> torch.Tensor:
        f = torch.cat([(per[j] * scales[j]).flatten() for j in range(nlay)])
        return f / f.norm()

    exact = {(q.id, e.id): float(feat(qgrads[qi]) @ feat(grads[n]))
             for qi, q in enumerate(queries) for n, e in enumerate(corpus)}
    _assert_close_rel(_scores(index, queries), exact)


def _assert_close_rel(got: dict, exact: dict) -> None:
    keys = sorted(exact)
    tg = torch.tensor([got[k] for k in keys], dtype=torch.float64)
    te = torch.tensor([exact[k] for k in keys], dtype=torch.float64)
    torch.testing.assert_close(tg, te, rtol=EXACT_RTOL, atol=EXACT_RTOL * float(te.abs().max()))
