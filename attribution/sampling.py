"""Seeded ancestral sampling with token logprobs, for a batch of equal-length prompts.

One loop shared by the demo's production traffic and the regression gate's generations: the
prompts run once through the model, then one token per step with the KV cache, each step drawing
from ``softmax(logits / temperature)`` with the caller's ``torch.Generator``. For every row it
returns the generated token ids, each token's logprob under the sampling distribution, the
``top_k`` most likely tokens with their logprobs, and whether the row stopped at EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SampledRow", "sample_rows"]


@dataclass
class SampledRow:
    tokens: list[int]
    logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    stopped: bool  # True: ended at EOS; False: ran out of new tokens


def sample_rows(model: Any, rows: Sequence[Sequence[int]], *, eos: int | None,
                vocab: Sequence[str], max_new_tokens: int, gen: Any, temperature: float = 1.0,
                top_k: int = 5, device: Any = None) -> list[SampledRow]:
    """Sample every row of ``rows`` (token ids, all the same length) together (module doc)."""
    import torch

    ids = torch.tensor([list(r) for r in rows], device=device)
    res = model(input_ids=ids, use_cache=True)
    cache, logits = res.cache, res.logits[:, -1]
    out = [SampledRow([], [], [], False) for _ in rows]
    for _ in range(max_new_tokens):
        logp = torch.log_softmax(logits.float() / max(temperature, 1e-6), dim=-1)
        nxt = torch.multinomial(logp.exp(), 1, generator=gen).squeeze(1)
        chosen = logp.gather(1, nxt[:, None]).squeeze(1).tolist()
        top_v, top_i = (t.tolist() for t in logp.topk(top_k, dim=-1))
        for i, tok in enumerate(nxt.tolist()):
            row = out[i]
            if row.stopped:
                continue
            if tok == eos:
                row.stopped = True
                continue
            row.tokens.append(tok)
            row.logprobs.append(chosen[i])
            row.top_logprobs.append({vocab[k]: v for k, v in zip(top_i[i], top_v[i],
                                                                   strict=True)})
        if all(row.stopped for row in out):
            break
        res = model(input_ids=nxt[:, None], cache=cache, use_cache=True)
        cache, logits = res.cache, res.logits[:, -1]
    return out
