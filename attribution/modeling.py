"""Load a Hugging Face causal-LM directory (optionally with a PEFT/LoRA adapter) for attribution.

``model_dir`` may also be a GGUF file: :func:`driftscope_llm.attribution.model_cache.resolve_model`
converts it once to a cached Hugging Face directory (float32), which is what gets loaded and
fingerprinted, so every path that loads a model through here accepts GGUF files.

The model is put in eval mode (dropout off) on CUDA when present, else CPU, with SDPA attention.
Its *fingerprint* (:mod:`driftscope_llm.attribution.fingerprint`: config, tokenizer and adapter
files in full, weight files by header and sampled blocks, cached by size and mtime) is what an
index manifest records, so an index is never scored with a different model. The tokenizer is
clamped to the model's maximum positions (:class:`LoadedModel`).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.errors import ModelLoadError
from driftscope_llm.attribution.fingerprint import FingerprintCache, model_fingerprint
from driftscope_llm.attribution.model_cache import resolve_model
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = [
    "LoadedModel", "load_model", "max_positions", "model_fingerprint", "pick_device",
]


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def max_positions(config: Any) -> int | None:
    """How many token positions the model accepts (``max_position_embeddings``, GPT-2's
    ``n_positions``), or None when its config does not say."""
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass
class LoadedModel:
    """A causal LM ready for attribution, with what identifies it."""

    model: Any  # transformers PreTrainedModel or peft PeftModel
    tokenizer: Any
    device: torch.device
    fingerprint: str
    model_dir: str
    adapter_dir: str | None

    def __post_init__(self) -> None:
        """Clamp the tokenizer's ``model_max_length`` to the model's positions.

        :func:`driftscope_llm.attribution.formatting.collate` never encodes more tokens than
        that, so every path that shows text to this model (index build, query, trace, worker
        exemplars, verification) truncates over-long inputs instead of indexing past the
        position embeddings.
        """
        config = getattr(self.model, "config", None)
        limit = max_positions(config) if config is not None else None
        current = getattr(self.tokenizer, "model_max_length", None)
        if limit is not None and (not isinstance(current, int) or current > limit):
            self.tokenizer.model_max_length = limit

    @property
    def max_positions(self) -> int | None:
        """The model's maximum number of positions (None when unknown)."""
        config = getattr(self.model, "config", None)
        return max_positions(config) if config is not None else None

    @property
    def has_adapter(self) -> bool:
        return self.adapter_dir is not None


def _dtype(name: str | None, device: torch.device) -> torch.dtype:
    if name in (None, "auto"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in table:
        raise ModelLoadError(f"unknown dtype {name!r}; use one of {sorted(table)}", path="")
    return table[name]


def _note(message: str) -> None:
    print(f"driftscope: {message}", file=sys.stderr, flush=True)


def load_model(
    model_dir: str | Path,
    adapter_dir: str | Path | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    fingerprint_cache: FingerprintCache | None = None,
) -> LoadedModel:
    """Load ``model_dir`` (and the LoRA adapter in ``adapter_dir``) in eval mode.

    ``model_dir`` is a Hugging Face causal-LM directory or a GGUF file (converted once and cached,
    :mod:`driftscope_llm.attribution.model_cache`; a note goes to stderr while it converts).

    ``dtype`` ``auto`` (default) is float32 on CPU and bfloat16 on a CUDA device that has it.
    The fingerprint (:mod:`driftscope_llm.attribution.fingerprint`) uses ``fingerprint_cache``,
    by default the per-user cache. Raises :class:`ModelLoadError` for a directory that is
    missing or not a causal LM.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    mdir = resolve_model(model_dir, on_step=_note)
    if not (mdir / "config.json").is_file():
        raise ModelLoadError(f"{mdir} is not a model directory (no config.json)", path=str(mdir))
    dev = pick_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(mdir))
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(mdir), dtype=_dtype(dtype, dev), attn_implementation="sdpa"
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load model from {mdir}: {exc}", path=str(mdir)) from exc
    adir: Path | None = None
    if adapter_dir is not None:
        adir = Path(adapter_dir)
        if not (adir / "adapter_config.json").is_file():
            raise ModelLoadError(f"{adir} is not a PEFT adapter directory", path=str(adir))
        from peft import PeftModel

        with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model, str(adir))
    model.to(dev)
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=dev,
        fingerprint=model_fingerprint(
            mdir, adir, cache=fingerprint_cache or FingerprintCache.default()),
        model_dir=str(mdir.resolve()),
        adapter_dir=str(adir.resolve()) if adir else None,
    )
