"""The attribution-method extension point: a small ABC plus a registry by name.

A method has two halves:

* a **featurizer** turns a batch of (prompt, response) examples into one float32 vector per
  example, using the fine-tuned model (hidden states for repsim, projected per-example gradients
  for the gradient family). Index rows and queries go through the same featurizer.
* a **scoring rule**: ``score(query, example_i) = <prepare_queries(q), row_i>`` where ``row_i`` is
  the unit-normalised stored feature (``cosine`` methods, query normalised too) or the raw feature
  (other methods). ``prepare_queries`` may use statistics of all index rows (inverse-Hessian
  approximations of LiSSA and DataInf).

Higher score always means *more responsible* for the query's behaviour. Adding a method is adding
one module that subclasses :class:`Method` and calls :func:`register`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from driftscope_llm.attribution.errors import UnknownMethodError
from driftscope_llm.attribution.settings import AttributionSettings

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import torch

    from driftscope_llm.attribution.formatting import EncodedBatch, ExampleLike
    from driftscope_llm.attribution.modeling import LoadedModel

__all__ = [
    "Block",
    "Featurizer",
    "Method",
    "RowSource",
    "available_methods",
    "get_method",
    "register",
]


@dataclass(frozen=True)
class Block:
    """A contiguous slice of the feature vector: one layer's projected gradient (or the whole
    hidden state for repsim). ``n_params`` is the size of the unprojected layer gradient."""

    name: str
    dim: int
    n_params: int


class Featurizer(Protocol):
    """Maps a batch to (B, D) float32 features; ``blocks`` lay out the D dimensions."""

    blocks: list[Block]

    def __call__(self, batch: EncodedBatch) -> torch.Tensor: ...

    def close(self) -> None: ...


class RowSource(Protocol):
    """Stored index rows, raw (un-normalised) float32, in blocks of rows."""

    blocks: list[Block]

    def iter_raw_rows(self) -> Iterator[torch.Tensor]: ...

    @property
    def count(self) -> int: ...


class Method(ABC):
    """An attribution method; see the module docstring for the scoring contract."""

    name: ClassVar[str]
    #: score on unit-normalised rows and queries (cosine) instead of raw features (dot)
    cosine: ClassVar[bool] = False

    def __init__(self, settings: AttributionSettings) -> None:
        self.settings = settings

    @property
    def is_cosine(self) -> bool:
        return self.cosine

    @abstractmethod
    def featurizer(self, model: LoadedModel) -> Featurizer:
        """The featurizer for ``model``; call ``close()`` when done (it may hold hooks)."""

    def query_featurizer(self, model: LoadedModel) -> Featurizer:
        """The featurizer for queries; the rows' by default. A method whose query side does more
        work than its rows (ASTRA's iterative inverse-Hessian solve) overrides it."""
        return self.featurizer(model)

    def prepare_queries(self, queries: torch.Tensor, rows: RowSource) -> torch.Tensor:
        """Transform (Q, D) raw query features before the inner product; identity by default."""
        return queries

    #: file name of state fitted on the corpus before featurizing (curvature factors), stored
    #: beside the index shards and checked by sha256 like them; ``None`` = nothing to fit
    state_file: ClassVar[str | None] = None

    def fit(self, model: LoadedModel, corpus: Sequence[ExampleLike], batch_size: int) -> None:
        """Fit the state the featurizer needs from the whole corpus (no-op by default)."""
        return None

    def save_state(self, path: Path) -> None:
        """Write the fitted state to ``path`` (only called when ``state_file`` is set)."""
        return None

    def load_state(self, path: Path) -> None:
        """Read the state written by :meth:`save_state` (only called when ``state_file`` is set)."""
        return None


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    """Names of the registered methods, sorted."""
    from driftscope_llm.attribution import methods as _methods  # noqa: F401 - registers the built-ins

    return sorted(_REGISTRY)


def get_method(settings: AttributionSettings | str) -> Method:
    """Instantiate the method named by ``settings`` (or by a method spec string)."""
    from driftscope_llm.attribution import methods as _methods  # noqa: F401 - registers the built-ins
    from driftscope_llm.attribution.settings import parse_method_spec

    if isinstance(settings, str):
        settings = parse_method_spec(settings)
    cls = _REGISTRY.get(settings.method)
    if cls is None:
        raise UnknownMethodError(settings.method, sorted(_REGISTRY))
    return cls(settings)
