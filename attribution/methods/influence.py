"""Influence functions on the projected gradients: LiSSA and DataInf.

Both estimate the Koh & Liang (2017) influence of upweighting training example ``z`` on the
query loss, ``I(z, q) = -∇L(q)ᵀ H⁻¹ ∇L(z)``. We report ``score = -I = ∇L(q)ᵀ H⁻¹ ∇L(z)`` so that,
as for every method here, **higher = more responsible**: a positive score means upweighting ``z``
lowers the query's loss (z taught the behaviour). Scale: unbounded, loss² per unit curvature.

What is approximated, for both:

1. gradients are the per-layer random projections of :mod:`attribution.methods.gradients`
   (Johnson–Lindenstrauss: inner products preserved in expectation);
2. the Hessian is **block-diagonal per layer** (no cross-layer curvature);
3. each block is the **empirical Fisher / Gauss–Newton** ``H_l = (1/n) Σ_i g_il g_ilᵀ`` of the
   projected training gradients, not the exact Hessian of the loss (the exact Hessian-vector
   products of Koh & Liang would need the unprojected parameters).

Then:

* **LiSSA** (Agarwal, Bullins & Hazan 2017; as used by Koh & Liang 2017): the truncated Neumann
  recursion ``h_0 = v``, ``h_j = v + (1 - d) h_{j-1} - H_l h_{j-1} / s`` for ``J`` steps, and
  ``H⁻¹v ≈ h_J / s`` (which converges to ``(H_l + s·d·I)⁻¹ v``). Because ``H_l`` is a small
  k×k matrix here we use it whole in every step instead of a sampled mini-batch, so the estimate is
  deterministic; truncation at depth ``J`` is kept (it acts as extra damping on small
  eigenvalues, as in the original). ``d = lissa_damping``; ``s = lissa_scale`` or, when unset,
  the block's largest eigenvalue × (1 + d), which guarantees convergence.
* **DataInf** (Kwon et al. 2023, eq. 5): ``(H_l + λ_l I)⁻¹ ≈ (1/(nλ_l)) Σ_i (I - g_i g_iᵀ /
  (λ_l + ||g_i||²))`` — swapping the order of averaging and inversion, then Sherman–Morrison on
  each rank-one term. ``λ_l = datainf_lambda × mean_i ||g_il||² / p_l`` with ``p_l`` the number of
  parameters of the unprojected layer (their code's ``mean(S)/10`` with ``S`` the mean squared
  gradient entry). The error of the swap grows with the spread of the ``g_i`` — large on LLMs,
  which is one reason the seed paper found it unreliable.
"""

from __future__ import annotations

from driftscope_llm.attribution.methods.base import Featurizer, Method, RowSource, register
from driftscope_llm.attribution.methods.gradients import GradientFeaturizer
from driftscope_llm.attribution.modeling import LoadedModel
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = [
    "DataInf", "LiSSA", "block_slices", "datainf_factors", "datainf_inverse", "lissa_inverse",
]


def block_slices(rows: RowSource) -> list[slice]:
    out, start = [], 0
    for b in rows.blocks:
        out.append(slice(start, start + b.dim))
        start += b.dim
    return out


def _empirical_fisher(rows: RowSource) -> list[torch.Tensor]:
    slices = block_slices(rows)
    grams = [torch.zeros(s.stop - s.start, s.stop - s.start, dtype=torch.float64) for s in slices]
    for chunk in rows.iter_raw_rows():
        c = chunk.double()
        for gram, s in zip(grams, slices, strict=True):
            gram += c[:, s].T @ c[:, s]
    return [(g / max(rows.count, 1)).float() for g in grams]


def lissa_inverse(
    v: torch.Tensor, hessian: torch.Tensor, *, damping: float, scale: float | None, depth: int
) -> torch.Tensor:
    """LiSSA estimate of ``(H + s·d·I)⁻¹ vᵀ`` for the rows of ``v`` (Q × k); see module doc."""
    if scale is None:
        top = float(torch.linalg.eigvalsh(hessian.double()).max().clamp_min(1e-30))
        scale = top * (1.0 + damping)
    h = v.clone()
    for _ in range(depth):
        h = v + (1.0 - damping) * h - (h @ hessian) / scale
    return h / scale


def datainf_factors(rows: RowSource, lam_coef: float) -> list[tuple[float, torch.Tensor]]:
    """Per block: ``λ_l`` and ``M_l = (1/n) Σ_i g_i g_iᵀ / (λ_l + ||g_i||²)`` (two passes).

    DataInf's estimate is then ``(H_l + λ_l I)⁻¹ v ≈ (v − M_l v) / λ_l`` (module doc, eq. 5).
    """
    slices = block_slices(rows)
    sq = [0.0] * len(slices)
    n = 0
    for chunk in rows.iter_raw_rows():
        c = chunk.double()
        for j, s in enumerate(slices):
            sq[j] += float((c[:, s] ** 2).sum())
        n += chunk.shape[0]
    n = max(n, 1)
    lams = [max(lam_coef * sq[j] / n / b.n_params, 1e-30) for j, b in enumerate(rows.blocks)]
    mats = [torch.zeros(s.stop - s.start, s.stop - s.start, dtype=torch.float64) for s in slices]
    for chunk in rows.iter_raw_rows():
        c = chunk.double()
        for s, lam, mat in zip(slices, lams, mats, strict=True):
            g = c[:, s]
            w = 1.0 / (lam + (g**2).sum(1))
            mat += (g * w[:, None]).T @ g
    return [(lam, mat / n) for lam, mat in zip(lams, mats, strict=True)]


def datainf_inverse(v: torch.Tensor, lam: float, m: torch.Tensor) -> torch.Tensor:
    """DataInf estimate of ``(H_l + λ_l I)⁻¹ vᵀ`` for the rows of ``v`` (Q × k)."""
    vd = v.double()
    return ((vd - vd @ m.T) / lam).float()


@register
class LiSSA(Method):
    """Influence with a LiSSA inverse-Hessian estimate (module docstring)."""

    name = "lissa"
    _cache: tuple[RowSource, list[torch.Tensor]] | None = None

    def featurizer(self, model: LoadedModel) -> Featurizer:
        return GradientFeaturizer(model, self.settings)

    def prepare_queries(self, queries: torch.Tensor, rows: RowSource) -> torch.Tensor:
        if self._cache is None or self._cache[0] is not rows:
            self._cache = (rows, _empirical_fisher(rows))
        out = torch.empty_like(queries)
        for s, hess in zip(block_slices(rows), self._cache[1], strict=True):
            out[:, s] = lissa_inverse(
                queries[:, s], hess.to(queries.device), damping=self.settings.lissa_damping,
                scale=self.settings.lissa_scale, depth=self.settings.lissa_depth,
            )
        return out


@register
class DataInf(Method):
    """Influence with DataInf's closed-form inverse-Hessian approximation (module docstring)."""

    name = "datainf"
    _cache: tuple[RowSource, list[tuple[float, torch.Tensor]]] | None = None

    def featurizer(self, model: LoadedModel) -> Featurizer:
        return GradientFeaturizer(model, self.settings)

    def prepare_queries(self, queries: torch.Tensor, rows: RowSource) -> torch.Tensor:
        if self._cache is None or self._cache[0] is not rows:
            self._cache = (rows, datainf_factors(rows, self.settings.datainf_lambda))
        out = torch.empty_like(queries)
        for s, (lam, m) in zip(block_slices(rows), self._cache[1], strict=True):
            out[:, s] = datainf_inverse(queries[:, s].cpu(), lam, m).to(queries.device)
        return out
