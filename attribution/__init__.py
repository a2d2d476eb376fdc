"""driftscope attribution: trace an LLM behaviour back to the fine-tuning examples behind it.

Typical use (what the attribution worker does)::

    from attribution import load_model, open_index, agreement
    model = load_model("models/ft", adapter_dir="models/ft/adapter")
    index = open_index("indexes/repsim", model=model)          # refuses a mismatched index
    results = index.query(queries, top_k=10)                     # list[QueryResult], best first

Importing this package is cheap and needs neither torch nor Kafka/Redis; the names that need the
``attribution`` extra (torch, transformers, peft, safetensors) are loaded on first use and raise
:class:`services.errors.MissingExtraError` naming the extra when it is absent.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from attribution.agreement import Agreement, agreement
from attribution.data import Example, load_corpus, load_queries
from attribution.settings import DEFAULT_METHOD, AttributionSettings

if TYPE_CHECKING:
    from attribution.evaluate import EvalRow, evaluate, evaluate_tasks
    from attribution.index import Hit, Index, QueryResult, build_index, open_index
    from attribution.methods.base import available_methods, get_method
    from attribution.modeling import LoadedModel, load_model
    from attribution.tinymodel import build_tiny_model, finetune

__all__ = [
    "DEFAULT_METHOD",
    "Agreement",
    "AttributionSettings",
    "EvalRow",
    "Example",
    "Hit",
    "Index",
    "LoadedModel",
    "QueryResult",
    "agreement",
    "available_methods",
    "build_index",
    "build_tiny_model",
    "evaluate",
    "evaluate_tasks",
    "finetune",
    "get_method",
    "load_corpus",
    "load_model",
    "load_queries",
    "open_index",
]

_LAZY = {
    "EvalRow": "attribution.evaluate",
    "evaluate": "attribution.evaluate",
    "evaluate_tasks": "attribution.evaluate",
    "Hit": "attribution.index",
    "Index": "attribution.index",
    "QueryResult": "attribution.index",
    "build_index": "attribution.index",
    "open_index": "attribution.index",
    "available_methods": "attribution.methods.base",
    "get_method": "attribution.methods.base",
    "LoadedModel": "attribution.modeling",
    "load_model": "attribution.modeling",
    "build_tiny_model": "attribution.tinymodel",
    "finetune": "attribution.tinymodel",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'attribution' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
