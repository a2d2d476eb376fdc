"""Per-example gradients of the response loss, projected inside the backward pass.

For a linear layer ``y = W x`` applied at every token ``t``, the gradient of example ``b``'s loss
is ``G_b = sum_t g_bt x_btᵀ`` (``g`` = gradient at the layer output, shape out × in). We never
form ``G_b``. With a factored random projection ``P = P_out ⊗ P_in`` (Gaussian entries with
variance ``1/k`` per side, so ``E<Pa, Pb> = <a, b>``, Johnson–Lindenstrauss), its projection is

    P_out G_b P_inᵀ = sum_t (P_out g_bt)(P_in x_bt)ᵀ        (k_out × k_in per example)

computed from the layer's input captured by a forward hook (projected right away) and the
gradient at the layer's output (``torch.autograd.grad`` on the captured outputs, so no parameter
``.grad`` is accumulated). Memory per layer is O(B·T·k); the cost is two thin matmuls per layer.
A side of the layer no larger than ``k`` is kept exactly (identity instead of projection).

GPT-2's ``Conv1D`` stores its weight as in × out (transposed vs ``nn.Linear``); we read the
in/out sizes accordingly, the per-example gradient formula is the same.

Layers tracked: the LoRA ``lora_A``/``lora_B`` linears when the model has an adapter; else the
linear/Conv1D weights of the last ``last_n_blocks`` transformer blocks (attention and MLP);
``target_modules`` (name substrings) overrides. Biases, norms, embeddings and the LM head are not
tracked.

Loss per example: mean token cross-entropy over its response tokens (prompt masked with -100),
summed over the batch so each example's gradient is independent of its batch-mates.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, cast

from driftscope_llm.attribution.formatting import EncodedBatch
from driftscope_llm.attribution.methods.base import Block
from driftscope_llm.attribution.modeling import LoadedModel
from driftscope_llm.attribution.settings import AttributionSettings
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = ["GradientFeaturizer", "response_loss", "select_layers"]

_BLOCK_RE = re.compile(r"(?:^|\.)(?:h|layers|layer|blocks)\.(\d+)\.")


def _conv1d_type() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        return None
    return Conv1D


@dataclass
class _Layer:
    name: str
    module: nn.Module
    d_in: int
    d_out: int


def _io_dims(module: nn.Module, conv1d: type | None) -> tuple[int, int]:
    w: Any = module.weight
    if conv1d is not None and isinstance(module, conv1d):
        return int(w.shape[0]), int(w.shape[1])
    return int(w.shape[1]), int(w.shape[0])


def select_layers(model: Any, settings: AttributionSettings, has_adapter: bool) -> list[_Layer]:
    """The linear layers whose weight gradients form the features (see module docstring)."""
    conv1d = _conv1d_type()
    kinds: tuple[type, ...] = (nn.Linear,) + ((conv1d,) if conv1d is not None else ())
    named: list[tuple[str, nn.Module]] = []
    for n, m in model.named_modules():
        if isinstance(m, kinds) and "lm_head" not in n and getattr(m, "weight", None) is not None:
            named.append((n, cast(nn.Module, m)))
    if settings.target_modules:
        chosen = [(n, m) for n, m in named if any(t in n for t in settings.target_modules)]
    elif has_adapter:
        chosen = [(n, m) for n, m in named if ".lora_A." in n or ".lora_B." in n]
    else:
        blocks = {int(mt.group(1)) for n, _ in named if (mt := _BLOCK_RE.search(n))}
        keep = set(sorted(blocks)[-settings.last_n_blocks :])
        chosen = [
            (n, m) for n, m in named
            if (mt := _BLOCK_RE.search(n)) and int(mt.group(1)) in keep
            and ".lora_" not in n
        ]
    return [_Layer(n, m, *_io_dims(m, conv1d)) for n, m in chosen]


def _projection(size: int, k: int, seed: int, tag: str) -> torch.Tensor | None:
    """Gaussian (k × size) projection with variance 1/k, or None when size <= k (keep exact)."""
    if size <= k:
        return None
    digest = hashlib.sha256(f"{seed}:{tag}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 62) - 1))
    proj: torch.Tensor = torch.randn(k, size, generator=gen) / (k**0.5)
    return proj


def response_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) mean next-token cross-entropy over each example's response tokens, in float32."""
    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    tok = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
        reduction="none",
    ).view(target.shape)
    count = (target != -100).sum(1).clamp_min(1)
    return tok.sum(1) / count


class GradientFeaturizer:
    """Projected per-example gradients of the response loss (module docstring)."""

    def __init__(self, model: LoadedModel, settings: AttributionSettings) -> None:
        self._model = model.model
        self._layers = select_layers(model.model, settings, model.has_adapter)
        if not self._layers:
            raise ValueError("no linear layers selected for gradient features")
        k = settings.proj_dim
        dev = model.device
        self._p_in: list[torch.Tensor | None] = []
        self._p_out: list[torch.Tensor | None] = []
        self.blocks: list[Block] = []
        for layer in self._layers:
            pi = _projection(layer.d_in, k, settings.seed, layer.name + ":in")
            po = _projection(layer.d_out, k, settings.seed, layer.name + ":out")
            self._p_in.append(None if pi is None else pi.to(dev))
            self._p_out.append(None if po is None else po.to(dev))
            k_in = layer.d_in if pi is None else k
            k_out = layer.d_out if po is None else k
            self.blocks.append(Block(layer.name, k_in * k_out, layer.d_in * layer.d_out))
        self._saved_flags = {id(p): p.requires_grad for p in self._model.parameters()}
        for p in self._model.parameters():
            p.requires_grad_(False)
        for layer in self._layers:
            layer.module.weight.requires_grad_(True)
        self._inputs: list[torch.Tensor | None] = [None] * len(self._layers)
        self._outputs: list[torch.Tensor | None] = [None] * len(self._layers)
        self._handles = [
            layer.module.register_forward_hook(self._hook(i))
            for i, layer in enumerate(self._layers)
        ]

    def _hook(self, i: int) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            x = inputs[0].detach().float()
            p = self._p_in[i]
            self._inputs[i] = x if p is None else x @ p.T
            self._outputs[i] = output

        return hook

    def __call__(self, batch: EncodedBatch) -> torch.Tensor:
        with torch.enable_grad():
            logits = self._model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask
            ).logits
            loss = response_loss(logits, batch.labels).sum()
            outs = [o for o in self._outputs if o is not None]
            if len(outs) != len(self._layers):
                raise RuntimeError("a tracked layer did not run in the forward pass")
            grads = torch.autograd.grad(loss, outs, allow_unused=True)
        feats = []
        for i, g in enumerate(grads):
            x = self._inputs[i]
            assert x is not None
            if g is None:
                g = torch.zeros(*x.shape[:2], self._layers[i].d_out, device=x.device)
            g = g.detach().float()
            p = self._p_out[i]
            gp = g if p is None else g @ p.T
            feats.append(torch.einsum("bto,bti->boi", gp, x).flatten(1))
        self._inputs = [None] * len(self._layers)
        self._outputs = [None] * len(self._layers)
        return torch.cat(feats, dim=1)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        for p in self._model.parameters():
            p.requires_grad_(self._saved_flags.get(id(p), False))
