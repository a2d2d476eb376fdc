"""driftscope attribution: trace an LLM behaviour back to the fine-tuning examples behind it.

Typical use (what the attribution worker does)::

    from driftscope_llm.attribution import load_model, open_index, agreement
    model = load_model("models/ft", adapter_dir="models/ft/adapter")
    index = open_index("indexes/repsim", model=model)          # refuses a mismatched index
    results = index.query(queries, top_k=10)                     # list[QueryResult], best first

Importing this package is cheap and needs neither torch nor Kafka/Redis; the names that need the
``attribution`` extra (torch, transformers, peft, safetensors) are loaded on first use and raise
:class:`driftscope_llm.services.errors.MissingExtraError` naming the extra when it is absent.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from driftscope_llm.attribution.agreement import Agreement, agreement
from driftscope_llm.attribution.data import Example, load_corpus, load_queries
from driftscope_llm.attribution.settings import DEFAULT_METHOD, AttributionSettings

if TYPE_CHECKING:
    from driftscope_llm.attribution.eval.evaluate import EvalRow, evaluate, evaluate_tasks
    from driftscope_llm.attribution.index.feature_index import (
        Hit,
        Index,
        QueryResult,
        build_index,
        open_index,
    )
    from driftscope_llm.attribution.methods.base import available_methods, get_method
    from driftscope_llm.attribution.modeling import LoadedModel, load_model
    from driftscope_llm.attribution.tinymodel import build_tiny_model, finetune

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
    "EvalRow": "driftscope_llm.attribution.eval.evaluate",
    "evaluate": "driftscope_llm.attribution.eval.evaluate",
    "evaluate_tasks": "driftscope_llm.attribution.eval.evaluate",
    "Hit": "driftscope_llm.attribution.index.feature_index",
    "Index": "driftscope_llm.attribution.index.feature_index",
    "QueryResult": "driftscope_llm.attribution.index.feature_index",
    "build_index": "driftscope_llm.attribution.index.feature_index",
    "open_index": "driftscope_llm.attribution.index.feature_index",
    "available_methods": "driftscope_llm.attribution.methods.base",
    "get_method": "driftscope_llm.attribution.methods.base",
    "LoadedModel": "driftscope_llm.attribution.modeling",
    "load_model": "driftscope_llm.attribution.modeling",
    "build_tiny_model": "driftscope_llm.attribution.tinymodel",
    "finetune": "driftscope_llm.attribution.tinymodel",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'attribution' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
