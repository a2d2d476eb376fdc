"""Long inputs and low-precision models: every path clamps to the model's positions; bf16 and
fp16 models featurize with float32 accumulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.formatting import collate, encode_example
from driftscope_llm.attribution.index.feature_index import build_index, featurize
from driftscope_llm.attribution.methods.base import get_method
from driftscope_llm.attribution.modeling import load_model
from driftscope_llm.attribution.settings import AttributionSettings
from driftscope_llm.attribution.tinymodel import build_tokenizer
from driftscope_llm.services.cli.main import app

POSITIONS = 24
WORDS = [f"w{i}" for i in range(40)]


def _long(n_prompt: int, n_response: int, tag: str = "") -> Example:
    return Example(f"long{tag}-{n_prompt}-{n_response}",
                   " ".join(WORDS[i % 40] for i in range(n_prompt)),
                   " ".join(WORDS[(i * 7) % 40] for i in range(n_response)))


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def short_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init model with only ``POSITIONS`` positions (GPT-2 indexes learned ones)."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    tok = build_tokenizer([" ".join(WORDS)])
    ids = {"vocab_size": len(tok), "bos_token_id": tok.bos_token_id,
           "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    if request.param == "gpt2":
        config = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=POSITIONS, **ids)
    else:
        config = LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                             num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=POSITIONS, **ids)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    out = tmp_path_factory.mktemp(f"short-{request.param}")
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def test_truncation_rule_prompt_left_then_response_right(short_model: Path) -> None:
    loaded = load_model(short_model)
    assert loaded.tokenizer.model_max_length == POSITIONS == loaded.max_positions
    tok = loaded.tokenizer
    # prompt too long, response fits: the prompt loses tokens from the left; its end is kept
    ex = _long(60, 5)
    enc = encode_example(tok, ex, max_length=512)
    full_prompt = tok(ex.prompt + "\n")["input_ids"]
    full_response = tok(ex.response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert len(enc.input_ids) == POSITIONS
    assert enc.input_ids[enc.prompt_len :] == full_response
    assert enc.input_ids[: enc.prompt_len] == full_prompt[-enc.prompt_len :]
    # the response alone is too long: one prompt token stays, the response loses its tail
    enc = encode_example(tok, _long(10, 80), max_length=512)
    assert len(enc.input_ids) == POSITIONS and enc.prompt_len == 1
    # a smaller max_length than the positions still wins
    assert len(encode_example(tok, ex, max_length=10).input_ids) == 10


def test_unclamped_input_would_crash_gpt2_but_every_path_is_clamped(short_model: Path,
                                                                     tmp_path: Path) -> None:
    loaded = load_model(short_model)
    corpus = [_long(50 + i, 30, "c") for i in range(6)] + [_long(3, 3, "s")]
    if loaded.model.config.model_type == "gpt2":  # the failure the clamp prevents
        raw = build_tokenizer([" ".join(WORDS)])
        batch = collate(raw, corpus[:1], 512)
        assert batch.input_ids.shape[1] > POSITIONS
        with pytest.raises(IndexError):
            loaded.model(input_ids=batch.input_ids)
    queries = [_long(90, 90, "q")]
    for spec in ("repsim", "gradsim", "lissa", "datainf"):
        settings = AttributionSettings(method=spec, proj_dim=4)
        index = build_index(loaded, corpus, tmp_path / spec, settings, batch_size=3)
        [res] = index.query(queries, top_k=3)
        assert len(res.results) == 3 and all(torch.isfinite(torch.tensor(h.score))
                                             for h in res.results)
    # verification (the worker's behavioural check) sees the same clamped tokenizer
    from driftscope_llm.attribution.verify import mean_loglik

    assert mean_loglik(loaded.model, loaded.tokenizer, queries + corpus[:2]) < 0
    # trace: the CLI path the on-call engineer uses, with an output far past the context
    out = CliRunner().invoke(app, ["trace", "--model", str(short_model), "--index",
                                   f"repsim={tmp_path / 'repsim'}", "--prompt",
                                   queries[0].prompt, "--output", queries[0].response * 3,
                                   "--top-k", "2", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(report["aggregate"]) == 2


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_models_featurize_in_float32(short_model: Path, dtype: str) -> None:
    ref = load_model(short_model, dtype="float32")
    low = load_model(short_model, dtype=dtype)
    assert next(low.model.parameters()).dtype == getattr(torch, dtype)
    corpus = [_long(8 + i, 6 + i, "d") for i in range(5)]
    for spec in ("repsim", "gradsim"):
        method = get_method(AttributionSettings(method=spec, proj_dim=8))
        want = featurize(method, ref, corpus, batch_size=2)
        got = featurize(method, low, corpus, batch_size=2)
        assert got.dtype == torch.float32 and bool(torch.isfinite(got).all())
        cos = torch.nn.functional.cosine_similarity(got, want, dim=1)
        # half precision rounds each layer's activations (3 significant digits for fp16, 2 for
        # bf16); the float32 features must still point the same way
        assert float(cos.min()) > 0.98, (spec, dtype, cos)
