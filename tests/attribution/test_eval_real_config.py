"""The suite's real-model configuration (``smollm2/lora``), checked without the real model.

A tiny Llama whose tokenizer carries a ChatML template (the template SmolLM2 uses) stands in
for SmolLM2-135M-Instruct: the family examples rendered through it must label only the
assistant's answer, and the configuration must run through :func:`run_suite` end to end (LoRA
fine-tune with :mod:`driftscope_llm.attribution.lora`, scoring, rows per configuration, the
counterfactual cost stated instead of run). The real model's figures are in docs/attribution.md
("On a real model"), produced by the command written there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.errors import SettingsError
from driftscope_llm.attribution.eval.real_config import (
    REAL_CONFIGS,
    REAL_SIZES,
    RealConfig,
    counterfactual_cost,
    real_task,
)
from driftscope_llm.attribution.eval.suite import run_suite
from driftscope_llm.attribution.formatting import IGNORE_INDEX, collate
from driftscope_llm.attribution.lora import RECIPE_FILE, LoraRecipe
from driftscope_llm.attribution.tinymodel import build_tiny_model
from driftscope_llm.services.cli.main import app

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MARKERS = ["<|im_start|>", "<|im_end|>"]


def _chatml_llama(corpus: list[Example], out: Path) -> Path:
    """A tiny Llama trained on ``corpus`` whose tokenizer renders ChatML (markers are single
    special tokens, embeddings resized for them)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tiny = build_tiny_model(corpus, out, arch="llama", epochs=1,
                            extra_texts=["user", "assistant", "system"])
    tok = AutoTokenizer.from_pretrained(str(tiny.model_dir))
    tok.add_special_tokens({"additional_special_tokens": MARKERS})
    tok.chat_template = CHATML
    model = AutoModelForCausalLM.from_pretrained(str(tiny.model_dir))
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(str(tiny.model_dir))
    tok.save_pretrained(str(tiny.model_dir))
    return tiny.model_dir


def test_real_sizes_give_every_family_a_small_held_out_task() -> None:
    for family in REAL_SIZES:
        task = real_task(family, 0)
        assert 60 <= len(task.corpus) <= 120, family
        assert 8 <= len(task.queries) <= 18, family
        assert not {e.prompt for e in task.corpus} & {q.prompt for q in task.queries}
        assert task.target_label in {q.label for q in task.queries}
    with pytest.raises(KeyError, match="unknown task 'poetry'"):
        real_task("poetry", 0)


def test_a_family_through_chatml_labels_only_the_assistant_answer(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    task = real_task("style", 0)
    tok = AutoTokenizer.from_pretrained(str(_chatml_llama(task.corpus, tmp_path / "m")))
    start, end = tok.convert_tokens_to_ids(MARKERS)
    examples = task.corpus[:4]
    batch = collate(tok, examples, max_length=96)
    for row, ex in enumerate(examples):
        ids = batch.input_ids[row][batch.attention_mask[row].bool()].tolist()
        labels = batch.labels[row][: len(ids)].tolist()
        answer = tok(ex.response, add_special_tokens=False)["input_ids"] + [end]
        n_prompt = len(ids) - len(answer)
        assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt  # system/user turn never learnt
        assert labels[n_prompt:] == answer == ids[n_prompt:]  # the answer and its <|im_end|>
        prompt = ids[:n_prompt]
        assert prompt[0] == start and prompt[-2:] == [start, tok.convert_tokens_to_ids(
            "assistant")]
        assert tok(ex.prompt, add_special_tokens=False)["input_ids"] == prompt[2:-3]
    assert batch.labels[batch.attention_mask == 0].eq(IGNORE_INDEX).all()


def test_the_real_configuration_runs_through_the_suite(tmp_path: Path) -> None:
    model_dir = _chatml_llama(real_task("trigger", 0).corpus, tmp_path / "m")
    recipe = LoraRecipe(rank=4, alpha=8, epochs=1, batch_size=16, lr=1e-2, max_length=64,
                        target_modules=("q_proj", "v_proj"))
    cfg = RealConfig(model=str(model_dir), recipe=recipe)
    lines: list[str] = []
    rows = run_suite(tmp_path / "suite", families=["trigger"], configs=[cfg], seeds=[0],
                     methods=["repsim:mean_response", "bm25", "random"],
                     counterfactual=True, log=lines.append)
    assert [r.method for r in rows] == ["repsim:mean_response", "bm25", "random"]
    for r in rows:
        assert r.queries == 8
        assert list(r.cover_by_config) == ["m/lora"]
        assert r.qld is None and r.lds is None and r.removed is None
    assert any("QLD/LDS not run; they would need 42 LoRA retrains" in s for s in lines)
    saved = json.loads((tmp_path / "suite/trigger/m-lora-0/adapter" / RECIPE_FILE)
                       .read_text())
    assert saved["examples"] == 80 and saved["recipe"] == recipe.to_json()
    # a second run over the same workdir reuses the saved adapter: same scores, no fine-tune
    again = run_suite(tmp_path / "suite", families=["trigger"], configs=[cfg], seeds=[0],
                      methods=["repsim:mean_response"], counterfactual=False)
    assert again[0].cover == rows[0].cover
    assert json.loads((tmp_path / "suite/trigger/m-lora-0/adapter" / RECIPE_FILE)
                      .read_text())["seconds"] == saved["seconds"]


def test_magic_is_refused_with_a_real_configuration(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="magic replays tiny fine-tunes only"):
        run_suite(tmp_path, families=["style"], configs=[REAL_CONFIGS["smollm2/lora"]],
                  methods=["repsim", "magic"])
    res = CliRunner().invoke(app, ["attribution", "eval", "--suite", "--configs",
                                   "smollm2/lora", "--methods", "magic", "--families", "style"])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert not list(tmp_path.iterdir())


def test_counterfactual_cost_counts_the_suites_retrains() -> None:
    # 3 methods, 2 seeds: (3 + 2) x 2 full retrains + 32 half-corpus ones
    assert counterfactual_cost(10.0, 3, 2, 32) == (42, 10.0 * (10 + 16))
