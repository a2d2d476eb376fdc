"""Every method on the model families people fine-tune, full fine-tune and LoRA.

Tiny random-initialised configs (2 blocks, 32 dims) of Llama, Qwen2, Mistral, Gemma, Phi-3,
GPT-NeoX and GPT-2. Per family: the tracked modules are the attention and MLP projections of the
last block (or the LoRA matrices), the projected per-example gradients equal the projection of
the true per-example gradient computed by autograd one example at a time, and every registered
method builds an index and answers a query.

QLoRA (a 4-bit frozen base via bitsandbytes) is not covered: bitsandbytes is not installed in
this environment (its quantised layers are not ``nn.Linear``; only the LoRA matrices on top
would be tracked, which the LoRA case here exercises).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.formatting import collate
from driftscope_llm.attribution.index.feature_index import build_index
from driftscope_llm.attribution.methods.base import available_methods
from driftscope_llm.attribution.methods.gradients import (
    GradientFeaturizer,
    _projection,
    response_loss,
)
from driftscope_llm.attribution.modeling import LoadedModel
from driftscope_llm.attribution.settings import METHOD_VARIANTS, AttributionSettings
from driftscope_llm.attribution.tinymodel import build_tokenizer

#: Relative tolerance of projected vs true per-example gradients (float32, different op order).
GRAD_RTOL = 1e-3
DIM, LAYERS, PROJ = 32, 2, 8


def _ids(tok: Any) -> dict[str, Any]:
    return {"vocab_size": len(tok), "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}


def _llama_like(cls_name: str, **extra: Any) -> Callable[[Any], Any]:
    def make(tok: Any) -> Any:
        import transformers

        cls = getattr(transformers, cls_name)
        return cls(num_hidden_layers=LAYERS, hidden_size=DIM, intermediate_size=2 * DIM,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                   **extra, **_ids(tok))
    return make


def _gpt_neox(tok: Any) -> Any:
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(num_hidden_layers=LAYERS, hidden_size=DIM, intermediate_size=2 * DIM,
                         num_attention_heads=4, max_position_embeddings=128, **_ids(tok))


def _gpt2(tok: Any) -> Any:
    from transformers import GPT2Config

    return GPT2Config(n_layer=LAYERS, n_embd=DIM, n_head=4, n_positions=128, **_ids(tok))


# family -> (config factory, linear names tracked in the last block, LoRA target modules)
FAMILIES: dict[str, tuple[Callable[[Any], Any], set[str], list[str]]] = {
    "llama": (_llama_like("LlamaConfig"),
              {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
              ["q_proj", "v_proj"]),
    "qwen2": (_llama_like("Qwen2Config"),
              {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
              ["q_proj", "v_proj"]),
    "mistral": (_llama_like("MistralConfig"),
                {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
                ["q_proj", "v_proj"]),
    "gemma": (_llama_like("GemmaConfig", head_dim=8),
              {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
              ["q_proj", "v_proj"]),
    "phi3": (_llama_like("Phi3Config"), {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
             ["qkv_proj"]),
    "gpt_neox": (_gpt_neox, {"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"},
                 ["query_key_value"]),
    "gpt2": (_gpt2, {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}, ["c_attn"]),
}


@pytest.fixture(scope="module")
def corpus() -> list[Example]:
    from driftscope_llm.attribution.eval.tasks import make_task

    return make_task("backdoor", 0).corpus[:8]


def _loaded(family: str, lora: bool, corpus: list[Example]) -> LoadedModel:
    from transformers import AutoModelForCausalLM

    make, _, targets = FAMILIES[family]
    tok = build_tokenizer([t for e in corpus for t in (e.prompt, e.response)])
    config = make(tok)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model: Any = AutoModelForCausalLM.from_config(config)
    if lora:
        from peft import LoraConfig, get_peft_model

        # init_lora_weights=False: B is random too, so lora_A has a non-zero gradient
        lcfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets,
                          fan_in_fan_out=family == "gpt2", init_lora_weights=False,
                          task_type="CAUSAL_LM")
        with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(model, lcfg)
    model.eval()
    return LoadedModel(model=model, tokenizer=tok, device=torch.device("cpu"),
                       fingerprint=f"tiny-{family}-{lora}", model_dir=f"/nonexistent/{family}",
                       adapter_dir="/nonexistent/adapter" if lora else None)


def _true_projected(loaded: LoadedModel, settings: AttributionSettings, example: Example,
                    feat: GradientFeaturizer) -> torch.Tensor:
    """One example's full weight gradients by autograd, then the same factored projection."""
    batch = collate(loaded.tokenizer, [example], settings.max_length)
    with torch.enable_grad():
        logits = loaded.model(input_ids=batch.input_ids,
                              attention_mask=batch.attention_mask).logits
        loss = response_loss(logits, batch.labels).sum()
        grads = torch.autograd.grad(loss, [layer.module.weight for layer in feat._layers])
    out = []
    for layer, g in zip(feat._layers, grads, strict=True):
        g = g.float().T if isinstance(layer.module, Conv1D) else g.float()  # Conv1D: in × out
        po = _projection(layer.d_out, settings.proj_dim, settings.seed, layer.name + ":out")
        pi = _projection(layer.d_in, settings.proj_dim, settings.seed, layer.name + ":in")
        g = g if po is None else po @ g
        g = g if pi is None else g @ pi.T
        out.append(g.flatten())
    return torch.cat(out)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_projected_gradients_equal_true_gradients(family: str, lora: bool,
                                                  corpus: list[Example]) -> None:
    loaded = _loaded(family, lora, corpus)
    settings = AttributionSettings(method="gradsim", proj_dim=PROJ, last_n_blocks=1)
    feat = GradientFeaturizer(loaded, settings)
    try:
        names = [layer.name for layer in feat._layers]
        if lora:
            targets = FAMILIES[family][2]
            assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
            assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names} == set(targets)
            assert len(names) == 2 * len(targets) * LAYERS
        else:
            last = f".{LAYERS - 1}."
            assert all(last in n for n in names), names
            tracked = {n.split(last, 1)[1] for n in names}
            expected = FAMILIES[family][1]
            assert {t if family == "gpt2" else t.rsplit(".", 1)[-1] for t in tracked} == expected
        assert any(b.dim < b.n_params for b in feat.blocks)  # some layers are really projected
        batch = collate(loaded.tokenizer, corpus[:4], settings.max_length)
        got = feat(batch)
        assert got.shape == (4, sum(b.dim for b in feat.blocks))
        for i in (0, 3):
            want = _true_projected(loaded, settings, corpus[i], feat)
            assert float(want.abs().max()) > 0
            torch.testing.assert_close(got[i], want, rtol=GRAD_RTOL,
                                       atol=GRAD_RTOL * float(want.abs().max()))
    finally:
        feat.close()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_method_builds_and_queries(family: str, lora: bool, corpus: list[Example],
                                         tmp_path: Path) -> None:
    loaded = _loaded(family, lora, corpus)
    for name in available_methods():
        for variant in METHOD_VARIANTS.get(name, (None,))[:1]:
            s = AttributionSettings(method=name, variant=variant, proj_dim=4, last_n_blocks=1)
            index = build_index(loaded, corpus[:6], tmp_path / name, s, batch_size=4)
            [res] = index.query([corpus[6]], top_k=3)
            scores = [h.score for h in res.results]
            assert len(scores) == 3 and scores == sorted(scores, reverse=True), name
            assert all(torch.isfinite(torch.tensor(scores))), name
            if s.family == "repsim":
                assert index.manifest.dim == DIM
