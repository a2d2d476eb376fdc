"""The projected per-example gradient equals the projection of the true per-example gradient."""

from __future__ import annotations

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from driftscope_llm.attribution.formatting import collate
from driftscope_llm.attribution.methods.gradients import (
    GradientFeaturizer,
    _projection,
    response_loss,
)
from driftscope_llm.attribution.settings import AttributionSettings

GRAD_RTOL = 1e-3


def _true_projected(loaded, settings, example, feat: GradientFeaturizer) -> torch.Tensor:
    """Full gradient of one example via autograd, then the same factored projection."""
    model = loaded.model
    batch = collate(loaded.tokenizer, [example], settings.max_length).to(loaded.device)
    for layer in feat._layers:
        layer.module.weight.grad = None
    loss = response_loss(model(input_ids=batch.input_ids,
                               attention_mask=batch.attention_mask).logits, batch.labels).sum()
    weights = [layer.module.weight for layer in feat._layers]
    grads = torch.autograd.grad(loss, weights)
    out = []
    for layer, g in zip(feat._layers, grads, strict=True):
        g = g.float()
        if isinstance(layer.module, Conv1D):  # Conv1D stores its weight as in × out
            g = g.T
        po = _projection(layer.d_out, settings.proj_dim, settings.seed, layer.name + ":out")
        pi = _projection(layer.d_in, settings.proj_dim, settings.seed, layer.name + ":in")
        if po is not None:
            g = po @ g
        if pi is not None:
            g = g @ pi.T
        out.append(g.flatten())
    return torch.cat(out)


def _check(loaded, corpus, settings) -> None:
    feat = GradientFeaturizer(loaded, settings)
    try:
        batch = collate(loaded.tokenizer, corpus[:4], settings.max_length).to(loaded.device)
        got = feat(batch)
        assert got.shape == (4, sum(b.dim for b in feat.blocks))
        for i in (0, 3):
            want = _true_projected(loaded, settings, corpus[i], feat)
            atol = GRAD_RTOL * float(want.abs().max())
            torch.testing.assert_close(got[i], want, rtol=GRAD_RTOL, atol=atol)
    finally:
        feat.close()


def test_gpt2_conv1d(gpt2_model, planted_corpus) -> None:
    s = AttributionSettings(method="gradsim", proj_dim=8, last_n_blocks=1)
    _check(gpt2_model, planted_corpus, s)


def test_llama_linear(llama_model, small_corpus) -> None:
    _check(llama_model, small_corpus, AttributionSettings(method="gradsim", proj_dim=8))


def test_lora_params_only(lora_model, small_corpus) -> None:
    s = AttributionSettings(method="gradsim", proj_dim=8)
    feat = GradientFeaturizer(lora_model, s)
    names = [layer.name for layer in feat._layers]
    feat.close()
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    _check(lora_model, small_corpus, s)


def test_featurizer_restores_requires_grad(gpt2_model) -> None:
    before = [p.requires_grad for p in gpt2_model.model.parameters()]
    GradientFeaturizer(gpt2_model, AttributionSettings(method="gradsim")).close()
    assert [p.requires_grad for p in gpt2_model.model.parameters()] == before


def test_target_modules_override(gpt2_model) -> None:
    s = AttributionSettings(method="gradsim", target_modules=("h.0.mlp.c_fc",))
    feat = GradientFeaturizer(gpt2_model, s)
    feat.close()
    assert [layer.name for layer in feat._layers] == ["transformer.h.0.mlp.c_fc"]


@pytest.mark.parametrize("k", [4, 1000])
def test_projection_is_identity_when_small(k: int) -> None:
    p = _projection(64, k, 0, "x")
    assert (p is None) == (k >= 64)
