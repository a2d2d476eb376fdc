"""TrackStar (Chang et al. 2024, "Scalable influence and fact tracing for LLM pretraining").

Score: cosine similarity, in [-1, 1], of the optimizer-corrected, randomly projected, unit-
normalised per-example gradients of the query and of a training example; **higher = more
responsible** (1 = a step on ``z`` moves the parameters exactly as a step on the query would).

Per tracked layer the per-example response-loss gradient ``G`` (out × in) is divided element-wise
by ``√v + ε`` before projection, ``v`` being the second moment of the gradients. TrackStar takes
Adam's ``v`` from the training run; a Hugging Face model directory carries no optimizer state,
so we fit ``v = mean_n G_n²`` over the corpus at the fine-tuned weights (the quantity Adam's
``v`` tracks, from per-example rather than mini-batch gradients) and store it beside the index
(``trackstar.safetensors``). ``ε = 10⁻³ × mean(√v)`` per layer keeps never-moving parameters from
dominating. The corrected gradient is projected to ``curvature_proj_dim`` per side (64 × 64 =
4096 dimensions per layer by default, vs 16 × 16 for ``gradsim``). The optional whitening by
the gradients' covariance (TrackStar's ``R``) is not applied.

Why the correction: without it, the few parameters with large gradients (typically embeddings of
frequent tokens and the last layers) dominate every inner product, and the ranking follows
"examples with large loss" rather than "examples that move the same parameters". Unit-normalising
removes the remaining dependence on each example's loss scale. As fine-tuning converges, fitted
examples' gradients shrink; the cosine ignores the shrinkage, but what remains is the example's
own residual error, which is less shared with its class (docs/attribution.md measures it).
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

__all__ = ["TrackStar", "fit_second_moment", "trackstar_transform"]

#: ε relative to the layer's mean √v
EPS_REL = 1e-3


def fit_second_moment(model: LoadedModel, corpus: Sequence[ExampleLike],
                      settings: AttributionSettings, batch_size: int = 16
                      ) -> dict[str, LayerState]:
    """Per tracked layer: ``scale = 1 / (√v + ε)`` with ``v = mean_n G_n²``."""
    grads = LayerGradients(model, settings)
    try:
        names = [layer.name for layer in grads.layers]
        v = [torch.zeros(lay.d_out, lay.d_in, dtype=torch.float64) for lay in grads.layers]
        n = 0
        for batch in iter_batches(model, corpus, batch_size, settings.max_length):
            for j, (x, g) in enumerate(grads.run(batch)):
                v[j] += (LayerGradients.per_example(x, g).double().cpu() ** 2).sum(0)
            n += batch.input_ids.shape[0]
    finally:
        grads.close()
    states: dict[str, LayerState] = {}
    for j, name in enumerate(names):
        root = (v[j] / max(n, 1)).sqrt()
        eps = EPS_REL * float(root.mean()) + 1e-30
        states[name] = {"scale": (1.0 / (root + eps)).float()}
    return states


def trackstar_transform(per_example: torch.Tensor, state: LayerState) -> torch.Tensor:
    """Divide (B, out, in) gradients element-wise by ``√v + ε``."""
    return per_example * state["scale"]


@register
class TrackStar(FittedLayerMethod):
    """Optimizer-corrected projected gradient cosine (module docstring)."""

    name = "trackstar"
    cosine = True
    state_file = "trackstar.safetensors"
    needs = "its second moments"

    def fit_states(self, model: LoadedModel, corpus: Sequence[ExampleLike],
                   batch_size: int) -> dict[str, LayerState]:
        return fit_second_moment(model, corpus, self.settings, batch_size)

    def featurizer(self, model: LoadedModel) -> Featurizer:
        return TransformedGradientFeaturizer(model, self.settings, self._fitted(),
                                             trackstar_transform)
