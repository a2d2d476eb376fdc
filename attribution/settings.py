"""Settings of an attribution method, saved in every index manifest.

:class:`AttributionSettings` is one flat, frozen pydantic model so it can travel through the CLI
and a JSON manifest unchanged. Two subsets matter:

* :meth:`AttributionSettings.feature_key` — what determines the stored per-example features
  (method family, pooling variant, layer, projection, parameter subset, max length, dtype). Two
  settings with the same feature key can share an index: ``gradsim:cosine``, ``gradsim:dot``,
  ``lissa`` and ``datainf`` all score the same projected gradients.
* the full model — also names the scoring rule and its hyperparameters (damping, depth, ...).

Runtime knobs (batch size, shard size, device) are not settings: they must not change results.

A *method spec* is ``name[:variant][@layer]``, e.g. ``repsim``, ``repsim:last_prompt``,
``repsim:mean_response@2``, ``gradsim:dot``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from driftscope_llm.attribution.errors import SettingsError, UnknownMethodError

__all__ = ["DEFAULT_METHOD", "METHOD_VARIANTS", "AttributionSettings", "parse_method_spec"]

#: Variants per method; the first is the method's default variant.
METHOD_VARIANTS: dict[str, tuple[str, ...]] = {
    "repsim": ("mean_response", "last_response", "last_prompt"),
    "gradsim": ("cosine", "dot"),
    "lissa": ("inverse",),
    "datainf": ("inverse",),
    "ekfac": ("inverse",),
    "astra": ("inverse",),
    "trackstar": ("cosine",),
}
#: The method used when none is named (chosen by the evaluation in docs/attribution.md).
DEFAULT_METHOD = "repsim"

_FEATURE_FAMILY = {"repsim": "repsim", "gradsim": "grad", "lissa": "grad", "datainf": "grad",
                   "ekfac": "ekfac", "astra": "astra", "trackstar": "trackstar"}


def _check_variant(method: str, variant: str | None) -> str:
    """The variant to use; raises for an unknown method or variant."""
    if method not in METHOD_VARIANTS:
        raise UnknownMethodError(method, sorted(METHOD_VARIANTS))
    variants = METHOD_VARIANTS[method]
    if variant is None:
        return variants[0]
    if variant not in variants:
        raise SettingsError(
            f"method {method!r} has no variant {variant!r}; choose one of: {', '.join(variants)}",
            field="variant",
        )
    return variant


class AttributionSettings(BaseModel):
    """Everything that determines an attribution method's scores.

    ``layer`` indexes ``hidden_states`` for repsim (``-1`` = final layer, ``0`` = embeddings).
    ``proj_dim`` is the side of the factored random projection of each layer's gradient
    (a layer contributes at most ``proj_dim**2`` dimensions); ``last_n_blocks`` picks the
    parameter subset when the model has no LoRA adapter; ``target_modules`` (module-name
    substrings) overrides both. ``storage_dtype`` is how features are stored on disk; all
    normalisation and scoring happens in float32.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str = DEFAULT_METHOD
    variant: str | None = None
    layer: int = -1
    proj_dim: int = Field(default=16, ge=1, le=1024)
    last_n_blocks: int = Field(default=2, ge=1)
    target_modules: tuple[str, ...] | None = None
    seed: int = 0
    max_length: int = Field(default=512, ge=8)
    storage_dtype: Literal["float16", "float32"] = "float16"
    # LiSSA (Agarwal et al. 2017; Koh & Liang 2017)
    lissa_damping: float = Field(default=0.01, ge=0.0)
    lissa_scale: float | None = None
    lissa_depth: int = Field(default=200, ge=1)
    # DataInf (Kwon et al. 2023): lambda_l = datainf_lambda * mean_i ||g_il||^2
    datainf_lambda: float = Field(default=0.1, gt=0.0)
    # EK-FAC and TrackStar (attribution/methods/curvature.py): side of the projection of the
    # whitened / optimizer-corrected layer gradient, and EK-FAC's damping as a fraction of the
    # layer's mean corrected eigenvalue
    curvature_proj_dim: int = Field(default=64, ge=1, le=1024)
    ekfac_damping: float = Field(default=0.1, gt=0.0)
    # ASTRA (attribution/methods/astra.py): Neumann steps per query and the corpus examples whose
    # layer gradients give the curvature products (all of them up to this many)
    astra_iterations: int = Field(default=20, ge=0, le=10_000)
    astra_fisher_examples: int = Field(default=256, ge=1)

    def model_post_init(self, __context: Any) -> None:
        object.__setattr__(self, "variant", _check_variant(self.method, self.variant))

    @property
    def family(self) -> str:
        """``repsim`` (hidden states), ``grad`` (projected gradients), or ``ekfac`` / ``astra`` /
        ``trackstar`` (gradients transformed by a fitted curvature or second moment)."""
        return _FEATURE_FAMILY[self.method]

    @property
    def spec(self) -> str:
        """Short display name, e.g. ``repsim:mean_response`` or ``repsim:last_prompt@2``."""
        base = self.method
        if self.method in ("repsim", "gradsim"):
            base += f":{self.variant}"
        if self.family == "repsim" and self.layer != -1:
            base += f"@{self.layer}"
        return base

    def feature_key(self) -> dict[str, Any]:
        """The settings that determine stored features; equal keys can share an index."""
        common: dict[str, Any] = {
            "family": self.family,
            "max_length": self.max_length,
            "storage_dtype": self.storage_dtype,
        }
        if self.family == "repsim":
            return {**common, "variant": self.variant, "layer": self.layer}
        if self.family in ("ekfac", "astra", "trackstar"):
            out = {
                **common,
                "proj_dim": self.curvature_proj_dim,
                "last_n_blocks": self.last_n_blocks,
                "target_modules": list(self.target_modules) if self.target_modules else None,
                "seed": self.seed,
            }
            if self.family in ("ekfac", "astra"):
                out["damping"] = self.ekfac_damping
            if self.family == "astra":
                out["fisher_examples"] = self.astra_fisher_examples
                out["iterations"] = self.astra_iterations
            return out
        return {
            **common,
            "proj_dim": self.proj_dim,
            "last_n_blocks": self.last_n_blocks,
            "target_modules": list(self.target_modules) if self.target_modules else None,
            "seed": self.seed,
        }

    def with_method(self, spec: str) -> AttributionSettings:
        """A copy with the method (and variant/layer) named by ``spec``."""
        return parse_method_spec(spec, base=self)


def parse_method_spec(spec: str, base: AttributionSettings | None = None) -> AttributionSettings:
    """Parse ``name[:variant][@layer]`` into settings, other fields from ``base``."""
    rest = spec.strip()
    layer: int | None = None
    if "@" in rest:
        rest, layer_s = rest.split("@", 1)
        try:
            layer = int(layer_s)
        except ValueError as exc:
            raise SettingsError(f"bad layer in method spec {spec!r}", field="layer") from exc
    name, _, variant = rest.partition(":")
    _check_variant(name, variant or None)
    fields = (base or AttributionSettings()).model_dump()
    fields.update(method=name, variant=variant or None)
    if layer is not None:
        fields["layer"] = layer
    elif base is None or base.method != name:
        fields["layer"] = -1
    return AttributionSettings(**fields)
