"""Attribution methods, registered by name (see :mod:`driftscope_llm.attribution.methods.base`)."""

from driftscope_llm.attribution.methods import (  # noqa: F401 - register built-ins
    astra,
    ekfac,
    gradsim,
    influence,
    repsim,
    trackstar,
)
from driftscope_llm.attribution.methods.base import (
    Block,
    Featurizer,
    Method,
    RowSource,
    available_methods,
    get_method,
    register,
)

__all__ = [
    "Block",
    "Featurizer",
    "Method",
    "RowSource",
    "available_methods",
    "get_method",
    "register",
]
