"""EK-FAC influence (George et al. 2018; Grosse et al. 2023), fitted natively on tracked layers.

Influence of training example ``z`` on query ``q`` (Koh & Liang 2017) is
``-∇L(q)ᵀ (H + λI)⁻¹ ∇L(z)``; as for every method here we report its negative, so **higher = more
responsible** (positive: upweighting ``z`` lowers the query's loss). Scale: unbounded, loss² per
unit curvature. Scores are inner products of stored features (``dot``, not cosine).

The curvature ``H`` is the empirical Fisher of the per-example response-loss gradients,
block-diagonal per tracked layer, and within a layer approximated by EK-FAC:

1. K-FAC factors ``A = E_t[x xᵀ]`` (layer inputs over real tokens) and ``S = E_t[g gᵀ]``
   (gradients at the layer output), eigendecomposed ``A = Q_A Λ_A Q_Aᵀ``, ``S = Q_S Λ_S Q_Sᵀ``;
2. eigenvalue correction: in the Kronecker eigenbasis the diagonal is re-fitted from per-example
   gradients, ``Λ_ij = mean_n [(Q_Sᵀ G_n Q_A)_ij]²`` — the best diagonal approximation of the
   Fisher in that basis, which is what makes EK-FAC more accurate than K-FAC;
3. damping ``λ = ekfac_damping × mean(Λ)`` per layer (kronfluence's heuristic).

So ``(H + λI)^{-1/2} G = Q_S [(Q_Sᵀ G Q_A) / √(Λ + λ)] Q_Aᵀ`` and the score is the inner product
of the whitened, rotated gradients; the last rotation back is orthogonal and is dropped. The
whitened (out × in) matrix is then randomly projected (``curvature_proj_dim`` per side;
:mod:`~driftscope_llm.attribution.methods.curvature`), which keeps the inner product in
expectation. Factors are fitted once per index (three passes over the corpus: factors,
eigenvalue correction, features) and stored beside it as ``ekfac.safetensors``.

Not exact: the Fisher is the *empirical* one (observed labels, not sampled), cross-layer
curvature is ignored, and the eigenbasis is K-FAC's. As fine-tuning converges, per-example
gradients shrink and become dominated by each example's own residual tokens; the whitening
divides by the small, shared curvature and amplifies those idiosyncratic directions, so EK-FAC's
identification (Cover) tends to fall with more epochs like other gradient methods'
(docs/attribution.md measures it).
"""

from __future__ import annotations

from collections.abc import Sequence

from driftscope_llm.attribution.formatting import ExampleLike
from driftscope_llm.attribution.methods.base import Featurizer, register
from driftscope_llm.attribution.methods.curvature import (
    FittedLayerMethod,
    LayerGradients,
    LayerState,
    TransformedGradientFeaturizer,
    iter_batches,
)
from driftscope_llm.attribution.modeling import LoadedModel
from driftscope_llm.attribution.settings import AttributionSettings
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = ["EKFAC", "ekfac_transform", "fit_ekfac"]


def fit_ekfac(model: LoadedModel, corpus: Sequence[ExampleLike], settings: AttributionSettings,
              batch_size: int = 16) -> dict[str, LayerState]:
    """Per tracked layer: ``q_in`` (Q_A), ``q_out`` (Q_S) and ``scale = 1/√(Λ + λ)``."""
    grads = LayerGradients(model, settings)
    try:
        names = [layer.name for layer in grads.layers]
        a = [torch.zeros(lay.d_in, lay.d_in, dtype=torch.float64) for lay in grads.layers]
        s = [torch.zeros(lay.d_out, lay.d_out, dtype=torch.float64) for lay in grads.layers]
        for batch in iter_batches(model, corpus, batch_size, settings.max_length):
            mask = batch.attention_mask.bool()
            for j, (x, g) in enumerate(grads.run(batch)):
                xt, gt = x[mask].double().cpu(), g[mask].double().cpu()
                a[j] += xt.T @ xt
                s[j] += gt.T @ gt
        q_in = [torch.linalg.eigh(m)[1] for m in a]
        q_out = [torch.linalg.eigh(m)[1] for m in s]
        lam = [torch.zeros(lay.d_out, lay.d_in, dtype=torch.float64) for lay in grads.layers]
        n = 0
        for batch in iter_batches(model, corpus, batch_size, settings.max_length):
            for j, (x, g) in enumerate(grads.run(batch)):
                per = LayerGradients.per_example(x, g).double().cpu()
                lam[j] += ((q_out[j].T @ per @ q_in[j]) ** 2).sum(0)
            n += batch.input_ids.shape[0]
    finally:
        grads.close()
    states: dict[str, LayerState] = {}
    for j, name in enumerate(names):
        eig = lam[j] / max(n, 1)
        damping = settings.ekfac_damping * float(eig.mean()) + 1e-30
        states[name] = {"q_in": q_in[j].float(), "q_out": q_out[j].float(),
                        "scale": (eig + damping).rsqrt().float()}
    return states


def ekfac_transform(per_example: torch.Tensor, state: LayerState) -> torch.Tensor:
    """Rotate (B, out, in) gradients into the Kronecker eigenbasis and whiten them."""
    rotated = state["q_out"].T @ per_example @ state["q_in"]
    return rotated * state["scale"]


@register
class EKFAC(FittedLayerMethod):
    """EK-FAC influence on the tracked layers (module docstring)."""

    name = "ekfac"
    state_file = "ekfac.safetensors"
    needs = "its factors"

    def fit_states(self, model: LoadedModel, corpus: Sequence[ExampleLike],
                   batch_size: int) -> dict[str, LayerState]:
        return fit_ekfac(model, corpus, self.settings, batch_size)

    def featurizer(self, model: LoadedModel) -> Featurizer:
        return TransformedGradientFeaturizer(model, self.settings, self._fitted(), ekfac_transform)
