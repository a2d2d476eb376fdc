"""ASTRA: EK-FAC-preconditioned Neumann iterations for the inverse-Hessian–vector product.

Influence of training example ``z`` on query ``q`` needs ``u_q = (H + λI)⁻¹ ∇L(q)``; the score is
``u_qᵀ ∇L(z)`` (as for every method here, **higher = more responsible**: upweighting ``z`` lowers
the query's loss). Scale: loss² per unit curvature, like EK-FAC's. EK-FAC
(:mod:`~driftscope_llm.attribution.methods.ekfac`) replaces ``H`` by a Kronecker-factored
approximation whose inverse is cheap but not exact. ASTRA (arXiv 2507.14740; on Bergson's
leaderboard EK-FAC + ASTRA reaches LDS 0.643 where EK-FAC alone reaches 0.454) keeps EK-FAC's
inverse as a *preconditioner* ``P`` and iterates towards the exact solution with products by the
real curvature:

    u_0 = α P v,      u_{k+1} = u_k + α P (v − (H + λI) u_k)        (k = 0 … K−1)

a Neumann series in ``I − αP(H + λI)``; it converges to ``(H + λI)⁻¹ v`` when the spectral radius
of that matrix is below 1, and after ``K`` steps its error is the EK-FAC error multiplied by
``(1 − α·μ_min)^K`` where ``μ_min`` is the smallest eigenvalue of ``P^{1/2}(H + λI)P^{1/2}``.

What ``H`` is here, per tracked layer (the same layers, loss and gradients as EK-FAC's):

* the **empirical Fisher** of the per-example response-loss gradients, block-diagonal per layer
  (no cross-layer curvature), in EK-FAC's Kronecker eigenbasis ``R = Q_Sᵀ G Q_A`` (a rotation:
  inner products and the Fisher's spectrum are unchanged);
* its products ``H u = (1/M) Σ_m R_m ⟨R_m, u⟩`` use the rotated gradients of ``M`` corpus
  examples stored beside the index (``astra_fisher_examples``; all of them for corpora up to that
  size, so the product is exact — otherwise a fixed sample chosen by a hash of the examples'
  text, independent of corpus order: a deterministic stochastic estimate, as the paper's
  mini-batches are);
* ``P = diag(1/(Λ + λ))`` is EK-FAC's eigenvalue-corrected inverse in that basis and ``λ`` its
  damping (``ekfac_damping`` × the layer's mean corrected eigenvalue);
* ``α = 1/μ_max`` with ``μ_max`` the largest eigenvalue of ``P^{1/2}(H + λI)P^{1/2}``, found by
  power iteration when the index is built (so the iteration cannot diverge).

``K = astra_iterations``; ``K = 0`` is EK-FAC scaled by ``α`` (the same ranking as EK-FAC). Index
rows are the rotated training gradients, randomly projected as EK-FAC's are (factored Gaussian,
inner products kept in expectation); queries are solved *before* the same projection. The cost
is at query time: ``K`` products with ``M`` stored gradients per tracked layer and query.

When not to use it: a corpus so large that ``M`` examples' full layer gradients (``M × out × in``
float32 per tracked layer) do not fit beside the index — track LoRA matrices or fewer layers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import partial

from driftscope_llm.attribution.formatting import ExampleLike
from driftscope_llm.attribution.methods.base import Featurizer, register
from driftscope_llm.attribution.methods.curvature import (
    FittedLayerMethod,
    LayerGradients,
    LayerState,
    TransformedGradientFeaturizer,
    iter_batches,
)
from driftscope_llm.attribution.methods.ekfac import fit_ekfac
from driftscope_llm.attribution.modeling import LoadedModel
from driftscope_llm.attribution.settings import AttributionSettings
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = ["ASTRA", "astra_solve", "fit_astra", "rotate"]

#: power-iteration steps for the step size (the top eigenvalue is well separated in practice;
#: a 5% overestimate only slows the iteration, it never makes it diverge)
POWER_STEPS = 50


def sample_positions(corpus: Sequence[ExampleLike], m: int) -> list[int]:
    """Positions of the ``min(n, m)`` examples whose curvature products are stored: all of them
    when the corpus is small enough, else the ``m`` with the smallest hash of their text — a fixed
    sample that does not depend on the corpus order, so neither do the scores."""
    if len(corpus) <= m:
        return list(range(len(corpus)))

    def text_hash(i: int) -> bytes:  # duplicates tie; their gradients are the same anyway
        return hashlib.sha256(f"{corpus[i].prompt}\x00{corpus[i].response}".encode()).digest()

    by_text = sorted(range(len(corpus)), key=text_hash)
    return sorted(by_text[:m])


def rotate(per_example: torch.Tensor, state: LayerState) -> torch.Tensor:
    """(B, out, in) gradients into EK-FAC's Kronecker eigenbasis (no rescaling)."""
    return state["q_out"].T @ per_example @ state["q_in"]


def _fisher_product(u: torch.Tensor, sample: torch.Tensor, damping: float) -> torch.Tensor:
    """``(H + λI) u`` for (B, out, in) ``u`` and a (M, out, in) sample of rotated gradients."""
    coef = torch.einsum("moi,boi->bm", sample, u) / sample.shape[0]
    return torch.einsum("bm,moi->boi", coef, sample) + damping * u


def _step_size(sample: torch.Tensor, precond: torch.Tensor, damping: float) -> float:
    """``1 / μ_max`` of ``P^{1/2}(H + λI)P^{1/2}`` by power iteration (deterministic start)."""
    root = precond.sqrt()
    x = torch.ones_like(precond)[None]
    top = 0.0
    for _ in range(POWER_STEPS):
        y = root * _fisher_product(root * x, sample, damping)
        top = float(y.norm())
        if top == 0.0:
            break
        x = y / top
    return 1.0 / (top * 1.05) if top > 0 else 1.0


def fit_astra(model: LoadedModel, corpus: Sequence[ExampleLike], settings: AttributionSettings,
              batch_size: int = 16) -> dict[str, LayerState]:
    """EK-FAC's factors plus, per layer, the stored Fisher sample, ``λ`` and the step size."""
    states = fit_ekfac(model, corpus, settings, batch_size)
    keep = sample_positions(corpus, settings.astra_fisher_examples)
    chosen = [corpus[i] for i in keep]
    grads = LayerGradients(model, settings)
    try:
        names = [layer.name for layer in grads.layers]
        samples: list[list[torch.Tensor]] = [[] for _ in names]
        for batch in iter_batches(model, chosen, batch_size, settings.max_length):
            for j, (x, g) in enumerate(grads.run(batch)):
                per = LayerGradients.per_example(x, g).double()
                st = states[names[j]]
                samples[j].append(rotate(per, {k: v.to(per.device).double()
                                               for k, v in st.items()}).cpu())
    finally:
        grads.close()
    for j, name in enumerate(names):
        st = states[name]
        sample = torch.cat(samples[j]).double()
        precond = st["scale"].double() ** 2  # 1 / (Λ + λ)
        damping = _damping(st, settings)
        st["sample"] = sample.float()
        st["damping"] = torch.tensor([damping], dtype=torch.float32)
        st["alpha"] = torch.tensor([_step_size(sample, precond, damping)], dtype=torch.float32)
    return states


def _damping(state: LayerState, settings: AttributionSettings) -> float:
    """EK-FAC's absolute damping ``λ = c·mean(Λ)`` (:func:`fit_ekfac` stores only
    ``scale = 1/√(Λ + λ)``; ``mean(Λ + λ) = (1 + c)·mean(Λ)``)."""
    mean_damped = float((state["scale"].double() ** -2).mean())
    c = settings.ekfac_damping
    return c * mean_damped / (1.0 + c)


def astra_solve(per_example: torch.Tensor, state: LayerState, iterations: int) -> torch.Tensor:
    """``(H + λI)⁻¹ v`` for (B, out, in) query gradients ``v``, in the rotated basis (module
    docstring); returned rotated, ready for the rows' projection."""
    v = rotate(per_example.double(), {k: t.double() for k, t in state.items()})
    sample = state["sample"].double()
    precond = state["scale"].double() ** 2
    damping = float(state["damping"])
    alpha = float(state["alpha"])
    u = alpha * precond * v
    for _ in range(iterations):
        u = u + alpha * precond * (v - _fisher_product(u, sample, damping))
    return u.float()


@register
class ASTRA(FittedLayerMethod):
    """EK-FAC-preconditioned iterative influence on the tracked layers (module docstring)."""

    name = "astra"
    state_file = "astra.safetensors"
    needs = "its factors"

    def fit_states(self, model: LoadedModel, corpus: Sequence[ExampleLike],
                   batch_size: int) -> dict[str, LayerState]:
        return fit_astra(model, corpus, self.settings, batch_size)

    def featurizer(self, model: LoadedModel) -> Featurizer:
        """Index rows: the rotated training gradients, projected."""
        return TransformedGradientFeaturizer(model, self.settings, self._fitted(), rotate)

    def query_featurizer(self, model: LoadedModel) -> Featurizer:
        """Queries: the iterative solve, then the rows' projection."""
        solve = partial(astra_solve, iterations=self.settings.astra_iterations)
        return TransformedGradientFeaturizer(model, self.settings, self._fitted(), solve)
