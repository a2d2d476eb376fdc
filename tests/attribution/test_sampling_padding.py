"""Prompts of different lengths sampled in one left-padded batch behave as if each were alone
(attribution/sampling.py): the first step's distribution matches to float precision and greedy
continuations are the same tokens, on both tiny architectures. Without the ``position_ids``
GPT-2 (learned absolute positions) fails it; Llama passes either way, since rotary positions
enter attention only as differences, which a left shift keeps."""

from __future__ import annotations

from typing import Any

import pytest

from driftscope_llm.attribution.sampling import sample_rows
from driftscope_llm.services.regress.generation import prompt_ids

PROMPTS = ("what is a zorblat ?", "tell me about the weather today please .", "hello")


def _rows(lm: Any) -> list[list[int]]:
    rows = [prompt_ids(lm.tokenizer, p) for p in PROMPTS]
    assert len({len(r) for r in rows}) == len(rows)  # the test needs different lengths
    return rows


def _sample(lm: Any, rows: list[list[int]], temperature: float, n: int) -> list[Any]:
    import torch

    vocab = list(lm.tokenizer.convert_ids_to_tokens(list(range(len(lm.tokenizer)))))
    with torch.no_grad():
        return sample_rows(lm.model, rows, eos=None, vocab=vocab, max_new_tokens=n,
                           gen=torch.Generator().manual_seed(0), temperature=temperature,
                           device=lm.device)


@pytest.mark.parametrize("which", ["gpt2_model", "llama_model"])
def test_a_padded_batch_samples_as_each_row_alone(which: str,
                                                  request: pytest.FixtureRequest) -> None:
    lm = request.getfixturevalue(which)
    rows = _rows(lm)
    together = _sample(lm, rows, 1.0, 1)
    for row, got in zip(rows, together, strict=True):
        alone = _sample(lm, [row], 1.0, 1)[0]
        assert got.top_logprobs[0].keys() == alone.top_logprobs[0].keys()
        for token, lp in alone.top_logprobs[0].items():
            assert got.top_logprobs[0][token] == pytest.approx(lp, abs=1e-4)
    greedy = _sample(lm, rows, 1e-6, 12)
    for row, got in zip(rows, greedy, strict=True):
        assert got.tokens == _sample(lm, [row], 1e-6, 12)[0].tokens
