"""The attribution worker's own settings: which model and indexes serve which production model.

These are sub-models; the worker deployable's settings
(:class:`driftscope_llm.services.config.WorkerSettings`) compose them with the bus, store and
metrics settings and are read once at the entrypoint (``driftscope worker --config FILE``,
``DRIFTSCOPE_*`` variables override it). A YAML example::

    kafka: {bootstrap_servers: "10.0.0.5:9092"}
    models:
      support-bot@v7:                      # "model@version" first, then plain "model"
        model_dir: /models/support-bot
        adapter_dir: /models/support-bot/adapter-v7
        default_method: repsim
        indexes:
          repsim: /indexes/support-bot-v7/repsim
          gradsim: /indexes/support-bot-v7/grad
        top_k: 10
        time_limit_s: 900
    lease_ttl_s: 120

Every index listed is queried; the one named by ``default_method`` drives the aggregate ranking,
the others are reported next to it and compared by :func:`driftscope_llm.attribution.agreement`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from driftscope_llm.attribution.verify import VerifySettings

__all__ = ["ModelTarget", "VerifySettings", "find_target"]


class ModelTarget(BaseModel):
    """Where the model behind one production (model, version) lives, and its corpus indexes."""

    model_config = ConfigDict(extra="forbid")

    model_dir: Path
    adapter_dir: Path | None = None
    indexes: dict[str, Path] = Field(
        description="Method spec (e.g. repsim, gradsim:dot) → index directory.")
    default_method: str | None = Field(
        default=None, description="Key of ``indexes`` that drives the aggregate ranking; "
                                  "default: 'repsim' when present, else the first key.")
    top_k: int = Field(default=10, ge=1)
    time_limit_s: float = Field(default=900.0, gt=0)
    batch_size: int = Field(default=16, ge=1)
    max_exemplars: int = Field(default=50, ge=1)
    verify: VerifySettings = Field(default_factory=VerifySettings)

    @model_validator(mode="after")
    def _check(self) -> ModelTarget:
        if not self.indexes:
            raise ValueError("a model target needs at least one index")
        if self.default_method is not None and self.default_method not in self.indexes:
            raise ValueError(f"default_method {self.default_method!r} is not among the indexes "
                             f"({', '.join(self.indexes)})")
        return self

    @property
    def primary_method(self) -> str:
        if self.default_method is not None:
            return self.default_method
        return "repsim" if "repsim" in self.indexes else next(iter(self.indexes))

    @property
    def methods(self) -> list[str]:
        """The primary method first, then the others in configuration order."""
        first = self.primary_method
        return [first] + [m for m in self.indexes if m != first]


def find_target(models: dict[str, ModelTarget], model: str,
                version: str) -> tuple[str, ModelTarget] | None:
    """The target configured for ``model@version``, else for ``model``, else ``None``."""
    for key in (f"{model}@{version}", model):
        if key in models:
            return key, models[key]
    return None
