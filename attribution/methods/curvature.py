"""Per-example layer gradients transformed by statistics fitted on the corpus: EK-FAC, TrackStar.

Both methods need more than a random projection of the raw gradient (what
:mod:`driftscope_llm.attribution.methods.gradients` computes inside the backward pass): they
rescale each parameter direction by a curvature or second-moment estimate *before* projecting.
So, per tracked layer (``y = W x`` at every token ``t``, ``W`` out × in), this module forms the
per-example gradient ``G_b = Σ_t g_bt x_btᵀ`` (out × in), transforms it, then projects it with a
factored Gaussian ``P_out · G · P_inᵀ`` (variance ``1/k`` per side, so inner products are kept in
expectation; a side no larger than ``k`` is kept exactly). ``G_b`` exists for one batch and one
layer at a time: ``B × out × in`` floats. Fine for LoRA matrices and small blocks; for a large
dense layer (4096² × batch) track LoRA or fewer modules.

Tracked layers are those of :func:`~driftscope_llm.attribution.methods.gradients.select_layers`
(``nn.Linear``, GPT-2 ``Conv1D`` — its weight is stored in × out, the gradient formula is the
same — and LoRA's ``lora_A``/``lora_B``). Loss: each example's mean response cross-entropy, so
one example's gradient does not depend on its batch-mates.

The fitted statistics (:class:`LayerState` per layer) are computed once over the whole corpus,
stored beside the index (``Method.state_file``) and covered by the index manifest, so a query is
always featurized with the same statistics as the rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.errors import IndexError_
from driftscope_llm.attribution.formatting import EncodedBatch, ExampleLike, collate
from driftscope_llm.attribution.methods.base import Block, Method
from driftscope_llm.attribution.methods.gradients import response_loss, select_layers
from driftscope_llm.attribution.modeling import LoadedModel
from driftscope_llm.attribution.settings import AttributionSettings
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
    from safetensors.torch import load_file, save_file
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = ["FittedLayerMethod", "LayerGradients", "LayerState", "TransformedGradientFeaturizer",
           "iter_batches", "load_states", "save_states"]

#: tensors of one layer's fitted state, by role (EK-FAC: ``q_in``, ``q_out``, ``scale``;
#: TrackStar: ``scale``); ``scale`` multiplies the (rotated) gradient element-wise
LayerState = dict[str, "torch.Tensor"]


def iter_batches(model: LoadedModel, examples: Sequence[ExampleLike], batch_size: int,
                 max_length: int) -> Iterator[EncodedBatch]:
    """Encoded batches of ``examples`` on the model's device, in order."""
    for s in range(0, len(examples), batch_size):
        yield collate(model.tokenizer, examples[s : s + batch_size], max_length).to(model.device)


class LayerGradients:
    """Forward hooks on the tracked layers; :meth:`run` returns each layer's (x, g) per token.

    ``x``: the layer's input (B, T, in); ``g``: the gradient of the batch's summed per-example
    response loss at the layer's output (B, T, out). Call :meth:`close` to remove the hooks and
    restore ``requires_grad``.
    """

    def __init__(self, model: LoadedModel, settings: AttributionSettings) -> None:
        self.model = model.model
        self.layers = select_layers(model.model, settings, model.has_adapter)
        if not self.layers:
            raise ValueError("no linear layers selected for gradient features")
        self._saved = {id(p): p.requires_grad for p in self.model.parameters()}
        for p in self.model.parameters():
            p.requires_grad_(False)
        for layer in self.layers:
            layer.module.weight.requires_grad_(True)
        self._x: list[torch.Tensor | None] = [None] * len(self.layers)
        self._y: list[torch.Tensor | None] = [None] * len(self.layers)
        self._handles = [layer.module.register_forward_hook(self._hook(i))
                         for i, layer in enumerate(self.layers)]

    def _hook(self, i: int) -> Any:
        def hook(module: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            self._x[i] = inputs[0].detach().float()
            self._y[i] = output

        return hook

    def run(self, batch: EncodedBatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
        with torch.enable_grad():
            logits = self.model(input_ids=batch.input_ids,
                                attention_mask=batch.attention_mask).logits
            loss = response_loss(logits, batch.labels).sum()
            outs = [y for y in self._y if y is not None]
            if len(outs) != len(self.layers):
                raise RuntimeError("a tracked layer did not run in the forward pass")
            grads = torch.autograd.grad(loss, outs, allow_unused=True)
        out = []
        for i, g in enumerate(grads):
            x = self._x[i]
            assert x is not None
            if g is None:
                g = torch.zeros(*x.shape[:2], self.layers[i].d_out, device=x.device)
            out.append((x, g.detach().float()))
        self._x = [None] * len(self.layers)
        self._y = [None] * len(self.layers)
        return out

    @staticmethod
    def per_example(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(B, out, in) per-example weight gradients ``Σ_t g_bt x_btᵀ``."""
        return torch.einsum("bto,bti->boi", g, x)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        for p in self.model.parameters():
            p.requires_grad_(self._saved.get(id(p), False))


def _gaussian(size: int, k: int, seed: int, tag: str) -> torch.Tensor | None:
    """(k × size) Gaussian with variance 1/k, seeded by (seed, tag); None when size <= k."""
    if size <= k:
        return None
    digest = hashlib.sha256(f"curvature:{seed}:{tag}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 62) - 1))
    proj: torch.Tensor = torch.randn(k, size, generator=gen) / (k**0.5)
    return proj


class TransformedGradientFeaturizer:
    """Per-example gradients, transformed per layer by fitted state, then projected.

    ``transform(G, state)`` maps (B, out, in) gradients to (B, out, in) transformed ones (the
    EK-FAC rotation and rescaling, or TrackStar's second-moment correction).
    """

    def __init__(self, model: LoadedModel, settings: AttributionSettings,
                 states: dict[str, LayerState],
                 transform: Callable[[torch.Tensor, LayerState], torch.Tensor]) -> None:
        self._grads = LayerGradients(model, settings)
        self._transform = transform
        k = settings.curvature_proj_dim
        dev = model.device
        self._states: list[LayerState] = []
        self._p_in: list[torch.Tensor | None] = []
        self._p_out: list[torch.Tensor | None] = []
        self.blocks: list[Block] = []
        for layer in self._grads.layers:
            if layer.name not in states:
                self._grads.close()
                raise ValueError(f"no fitted state for layer {layer.name!r}")
            self._states.append({n: t.to(dev) for n, t in states[layer.name].items()})
            pi = _gaussian(layer.d_in, k, settings.seed, layer.name + ":in")
            po = _gaussian(layer.d_out, k, settings.seed, layer.name + ":out")
            self._p_in.append(None if pi is None else pi.to(dev))
            self._p_out.append(None if po is None else po.to(dev))
            dim = (layer.d_in if pi is None else k) * (layer.d_out if po is None else k)
            self.blocks.append(Block(layer.name, dim, layer.d_in * layer.d_out))

    def __call__(self, batch: EncodedBatch) -> torch.Tensor:
        feats = []
        for i, (x, g) in enumerate(self._grads.run(batch)):
            t = self._transform(LayerGradients.per_example(x, g), self._states[i])
            po, pi = self._p_out[i], self._p_in[i]
            if po is not None:
                t = po @ t
            if pi is not None:
                t = t @ pi.T
            feats.append(t.flatten(1))
        return torch.cat(feats, dim=1)

    def close(self) -> None:
        self._grads.close()


def save_states(path: Path, states: dict[str, LayerState]) -> None:
    """Write per-layer states to one safetensors file (tensor names ``layer|role``)."""
    flat = {f"{layer}|{role}": t.detach().cpu().float().contiguous()
            for layer, st in states.items() for role, t in st.items()}
    tmp = path.with_suffix(".tmp")
    save_file(flat, str(tmp))
    tmp.replace(path)


def load_states(path: Path) -> dict[str, LayerState]:
    """Read what :func:`save_states` wrote."""
    out: dict[str, LayerState] = {}
    for key, t in load_file(str(path)).items():
        layer, role = key.rsplit("|", 1)
        out.setdefault(layer, {})[role] = t
    return out


class FittedLayerMethod(Method):
    """A method whose featurizer needs per-layer state fitted on the corpus (EK-FAC, ASTRA,
    TrackStar): keeps it, writes it beside the index and reads it back. Subclasses set
    ``state_file`` and ``needs`` (what the state is, for the error when it is missing) and
    implement :meth:`fit_states`."""

    needs: str = "its fitted state"

    def __init__(self, settings: AttributionSettings) -> None:
        super().__init__(settings)
        self._states: dict[str, LayerState] | None = None

    def fit_states(self, model: LoadedModel, corpus: Sequence[ExampleLike],
                   batch_size: int) -> dict[str, LayerState]:
        """The per-layer state, fitted on the whole corpus."""
        raise NotImplementedError

    def fit(self, model: LoadedModel, corpus: Sequence[ExampleLike], batch_size: int) -> None:
        self._states = self.fit_states(model, corpus, batch_size)

    def save_state(self, path: Path) -> None:
        save_states(path, self._fitted(path))

    def load_state(self, path: Path) -> None:
        self._states = load_states(path)

    def _fitted(self, path: Path | None = None) -> dict[str, LayerState]:
        if self._states is None:
            raise IndexError_(f"{self.name} needs {self.needs}: build the index with "
                              f"--method {self.name}", path=str(path or ""))
        return self._states
