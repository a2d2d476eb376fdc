"""Load a Hugging Face causal-LM directory (optionally with a PEFT/LoRA adapter) for attribution.

The model is put in eval mode (dropout off) on CUDA when present, else CPU, with SDPA attention.
Its *fingerprint* — sha256 over the config, weight, tokenizer and adapter files — is what an index
manifest records, so an index is never scored with a different model.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.errors import ModelLoadError
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = ["LoadedModel", "load_model", "model_fingerprint", "pick_device"]

_HASHED_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt", ".jinja")


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _hash_dir(h: Any, root: Path, tag: str) -> None:
    for f in sorted(p for p in root.iterdir() if p.is_file() and p.suffix in _HASHED_SUFFIXES):
        h.update(f"{tag}/{f.name}\0".encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)


def model_fingerprint(model_dir: str | Path, adapter_dir: str | Path | None = None) -> str:
    """sha256 over the model directory's config/weights/tokenizer files and the adapter's files.

    File names are part of the hash, directory paths are not: a copied model keeps its
    fingerprint. Only top-level files with the suffixes json, safetensors, bin, model, txt, jinja
    are read.
    """
    h = hashlib.sha256()
    _hash_dir(h, Path(model_dir), "model")
    if adapter_dir is not None:
        _hash_dir(h, Path(adapter_dir), "adapter")
    return h.hexdigest()


@dataclass
class LoadedModel:
    """A causal LM ready for attribution, with what identifies it."""

    model: Any  # transformers PreTrainedModel or peft PeftModel
    tokenizer: Any
    device: torch.device
    fingerprint: str
    model_dir: str
    adapter_dir: str | None

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


def load_model(
    model_dir: str | Path,
    adapter_dir: str | Path | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
) -> LoadedModel:
    """Load ``model_dir`` (and the LoRA adapter in ``adapter_dir``) in eval mode.

    ``dtype`` ``auto`` (default) is float32 on CPU and bfloat16 on a CUDA device that has it.
    Raises :class:`ModelLoadError` for a directory that is missing or not a causal LM.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    mdir = Path(model_dir)
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
        fingerprint=model_fingerprint(mdir, adir),
        model_dir=str(mdir.resolve()),
        adapter_dir=str(adir.resolve()) if adir else None,
    )
