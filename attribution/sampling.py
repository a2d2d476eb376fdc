"""Seeded ancestral sampling with token logprobs, for a batch of prompts.

One loop shared by the demo's production traffic and the regression gate's generations: the
prompts run once through the model, then one token per step with the KV cache, each step drawing
from ``softmax(logits / temperature)`` with the caller's ``torch.Generator``. For every row it
returns the generated token ids, each token's logprob under the sampling distribution, the
``top_k`` most likely tokens with their logprobs, and whether the row stopped at EOS.

Prompts of different lengths share a batch: shorter rows are padded on the left, masked out of
attention and given the positions they would have alone (``position_ids`` counted over real
tokens only), so a row samples the same distribution as it would in a batch of its own length.
A batch of equal-length rows passes no mask at all. On a CPU a decoding step costs about as much
for one row as for dozens (per-layer overhead dominates), so one padded batch of every prompt is
several times faster than one batch per prompt length.
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
    """Sample every row of ``rows`` (token ids; lengths may differ) together (module doc)."""
    import torch

    width = max(len(r) for r in rows)
    padded = any(len(r) != width for r in rows)
    ids = torch.tensor([[0] * (width - len(r)) + list(r) for r in rows], device=device)
    extra: dict[str, Any] = {}
    if padded:
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        extra = {"attention_mask": mask,
                 "position_ids": (mask.cumsum(1) - 1).clamp(min=0)}
    res = model(input_ids=ids, use_cache=True, **extra)
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
        if padded:
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            extra = {"attention_mask": mask, "position_ids": mask.sum(1, keepdim=True) - 1}
        res = model(input_ids=nxt[:, None], cache=cache, use_cache=True, **extra)
        cache, logits = res.cache, res.logits[:, -1]
    return out
