"""GradSim: TracIn with one checkpoint (Pruthi et al. 2020), on projected gradients.

TracIn scores a training example ``z`` against a query ``q`` by ``η <∇L(q), ∇L(z)>`` summed over
checkpoints; with one checkpoint and the constant learning rate dropped this is the gradient inner
product. Gradients are those of the response loss over the LoRA parameters (or a parameter subset),
projected to a few dimensions per layer (:mod:`driftscope_llm.attribution.methods.gradients`).

Variants:

* ``cosine`` (default) — ``cos(P∇L(q), P∇L(z))`` in [-1, 1], scale-free; discounts examples whose
  gradient is large only because their loss is high (the usual failure of raw TracIn).
* ``dot`` — ``<P∇L(q), P∇L(z)>``, unbounded, in units of loss² per parameter²; positive means a
  gradient step on ``z`` lowers the query's loss to first order (``z`` supports the behaviour).

Higher = more responsible in both.
"""

from __future__ import annotations

from driftscope_llm.attribution.methods.base import Featurizer, Method, register
from driftscope_llm.attribution.methods.gradients import GradientFeaturizer
from driftscope_llm.attribution.modeling import LoadedModel

__all__ = ["GradSim"]


@register
class GradSim(Method):
    """TracIn-style gradient similarity (see module docstring)."""

    name = "gradsim"

    @property
    def is_cosine(self) -> bool:
        return self.settings.variant == "cosine"

    def featurizer(self, model: LoadedModel) -> Featurizer:
        return GradientFeaturizer(model, self.settings)
