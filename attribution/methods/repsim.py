"""RepSim: cosine similarity of the fine-tuned model's hidden states.

Li et al., "Do Influence Functions Work on Large Language Models?" (arXiv 2409.19998) found this
baseline beat influence functions at finding the training data behind an LLM behaviour. Their
variant takes the final layer's hidden state at the last prompt token; ours also offers
response-aware pooling, because a query is a (prompt, *response*) pair and the behaviour being
traced lives in the response.

Variants (``settings.variant``), all at ``hidden_states[settings.layer]`` (``-1`` = final layer,
after the final norm; ``0`` = embeddings):

* ``mean_response`` — mean over the response tokens (default; best in docs/attribution.md);
* ``last_response`` — the last response token (the EOS / end-of-turn token);
* ``last_prompt`` — the last prompt token (the seed paper's choice; ignores the response).

Score: cosine similarity in [-1, 1], scale-free; 1 = same direction, higher = more responsible.
Hidden states are cast to float32 before pooling and normalising (bf16/fp16-safe).
"""

from __future__ import annotations

from typing import Any

from driftscope_llm.attribution.formatting import EncodedBatch
from driftscope_llm.attribution.methods.base import Block, Featurizer, Method, register
from driftscope_llm.attribution.modeling import LoadedModel
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = ["RepSim", "backbone"]


def backbone(model: Any) -> Any:
    """The transformer under the LM head (skips computing logits); unwraps PEFT models."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.base_model


class _HiddenStateFeaturizer:
    def __init__(self, model: LoadedModel, variant: str, layer: int) -> None:
        self._net = backbone(model.model)
        self._variant = variant
        self._layer = layer
        hidden = int(model.model.config.hidden_size)
        self.blocks = [Block(name=f"hidden_states[{layer}]", dim=hidden, n_params=hidden)]

    @torch.no_grad()
    def __call__(self, batch: EncodedBatch) -> torch.Tensor:
        out = self._net(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            output_hidden_states=self._layer != -1,
        )
        h: torch.Tensor = (
            out.last_hidden_state if self._layer == -1 else out.hidden_states[self._layer]
        ).float()
        rows = torch.arange(h.shape[0], device=h.device)
        if self._variant == "last_prompt":
            return h[rows, batch.last_prompt]
        if self._variant == "last_response":
            return h[rows, batch.last_response]
        mask = batch.response_mask.unsqueeze(-1).to(h.dtype)
        pooled: torch.Tensor = (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return pooled

    def close(self) -> None:
        return None


@register
class RepSim(Method):
    """Hidden-state cosine similarity (see module docstring for variants and score meaning)."""

    name = "repsim"
    cosine = True

    def featurizer(self, model: LoadedModel) -> Featurizer:
        return _HiddenStateFeaturizer(model, str(self.settings.variant), self.settings.layer)
