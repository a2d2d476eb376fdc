"""Write what llama.cpp serves: a LoRA adapter as a GGUF adapter file, a GGUF model re-typed.

The regression gate compares served models too (``llama_cpp.server``, OpenAI-compatible with
token logprobs). A LoRA fine-tune of a GGUF base is served without merging or re-quantising the
base: llama.cpp applies a GGUF *adapter* file on top of the base at load time (the server's
``lora_path``). :func:`write_lora_gguf` writes one from a PEFT adapter directory, the layout
llama.cpp's own ``convert_lora_to_gguf.py`` produces:

* metadata ``general.architecture`` (the base's), ``general.type = adapter``,
  ``adapter.type = lora``, ``adapter.lora.alpha``; llama.cpp scales by ``alpha / rank`` as peft
  does (rsLoRA and DoRA adapters are refused);
* per adapted linear map, tensors ``<gguf name>.lora_a`` (rank x in) and ``.lora_b`` (out x rank)
  in float32, named after the base tensor (``blk.N.attn_q.weight`` for
  ``layers.N.self_attn.q_proj``);
* for the Llama family the query and key rows of the GGUF base are permuted (llama.cpp's rotary
  layout; transformers undoes it when it reads a GGUF), so ``lora_b`` of ``q_proj``/``k_proj`` gets
  the same row permutation: ``B A`` then matches the permuted base weight.

:func:`retype_gguf` rewrites a GGUF model with every tensor dequantised to float32 (or float16),
metadata and tokenizer kept; llama.cpp's quantiser (``llama_cpp.llama_model_quantize``) turns that
into any other type. With the Q4_1 SmolLM2 file, the float32 copy holds exactly the Q4_1 weights
(dequantisation is exact), so the two differ only in how llama.cpp computes with them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.errors import ModelLoadError
from driftscope_llm.services.errors import MissingExtraError

__all__ = ["LLAMA_TENSORS", "retype_gguf", "write_lora_gguf"]

#: peft module name -> llama.cpp tensor name of the Llama family (``blk.{bid}.<name>.weight``).
LLAMA_TENSORS = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v",
                 "o_proj": "attn_output", "gate_proj": "ffn_gate", "up_proj": "ffn_up",
                 "down_proj": "ffn_down"}
_ROPE_PERMUTED = {"q_proj", "k_proj"}


def _gguf() -> Any:
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover
        raise MissingExtraError("gguf", "attribution") from exc
    return gguf


def _field(reader: Any, key: str) -> Any:
    """A scalar or string metadata value of a GGUF reader (None when absent)."""
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.parts[field.data[0]]
    if field.types and field.types[0] == _gguf().GGUFValueType.STRING:
        return bytes(value).decode("utf-8")
    return value.tolist()[0]


def _permute_rows(b: Any, n_head: int) -> Any:
    """llama.cpp's rotary row permutation (``convert_hf_to_gguf`` ``LlamaModel.permute``)."""
    out = b.shape[0]
    return b.reshape(n_head, 2, out // n_head // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def write_lora_gguf(adapter_dir: str | Path, base_gguf: str | Path, out: str | Path) -> Path:
    """Write the PEFT LoRA adapter in ``adapter_dir`` (trained on the model converted from
    ``base_gguf``) as a llama.cpp GGUF adapter file ``out`` (module docstring)."""
    gguf = _gguf()
    from safetensors.numpy import load_file

    adir, out_path = Path(adapter_dir), Path(out)
    try:
        cfg = json.loads((adir / "adapter_config.json").read_text())
        weights = load_file(str(adir / "adapter_model.safetensors"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{adir} is not a PEFT adapter directory ({exc})",
                             path=str(adir)) from exc
    if cfg.get("use_rslora") or cfg.get("use_dora"):
        raise ModelLoadError(f"{adir}: rsLoRA/DoRA adapters cannot be written for llama.cpp",
                             path=str(adir))
    reader = gguf.GGUFReader(str(base_gguf))
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ModelLoadError(f"{base_gguf}: architecture {arch!r}; only llama GGUF bases are "
                             "supported", path=str(base_gguf))
    n_head = int(_field(reader, "llama.attention.head_count"))
    n_kv = int(_field(reader, "llama.attention.head_count_kv") or n_head)
    writer = gguf.GGUFWriter(str(out_path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(cfg["lora_alpha"]))
    for name, tensors in sorted(_lora_pairs(weights, adir).items()):
        layer, module = name
        a, b = tensors
        if module in _ROPE_PERMUTED:
            b = _permute_rows(b, n_head if module == "q_proj" else n_kv)
        base = f"blk.{layer}.{LLAMA_TENSORS[module]}.weight"
        writer.add_tensor(base + ".lora_a", a.astype("float32", copy=False))
        writer.add_tensor(base + ".lora_b", b.astype("float32", copy=False))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


def _lora_pairs(weights: dict[str, Any], adir: Path) -> dict[tuple[int, str], tuple[Any, Any]]:
    """(layer, module) -> (A, B) from peft's ``...layers.N.<block>.<module>.lora_A.weight``."""
    found: dict[tuple[int, str], dict[str, Any]] = {}
    for key, value in weights.items():
        parts = key.split(".")
        try:
            at = parts.index("layers")
            layer, module, which = int(parts[at + 1]), parts[-3], parts[-2]
        except (ValueError, IndexError) as exc:
            raise ModelLoadError(f"{adir}: unexpected adapter tensor {key!r}",
                                 path=str(adir)) from exc
        if module not in LLAMA_TENSORS or which not in ("lora_A", "lora_B"):
            raise ModelLoadError(f"{adir}: adapter tensor {key!r} has no llama.cpp "
                                 "counterpart", path=str(adir))
        found.setdefault((layer, module), {})[which] = value
    return {k: (v["lora_A"], v["lora_B"]) for k, v in found.items()}


def retype_gguf(src: str | Path, out: str | Path, *, dtype: str = "F32") -> Path:
    """Copy the GGUF model ``src`` to ``out`` with every tensor dequantised to ``dtype``
    (``F32`` or ``F16``), metadata kept except the file type (module docstring)."""
    gguf = _gguf()
    import numpy as np

    if dtype not in ("F32", "F16"):
        raise ModelLoadError(f"retype_gguf writes F32 or F16, not {dtype!r}", path=str(out))
    reader = gguf.GGUFReader(str(src))
    arch = _field(reader, "general.architecture")
    writer = gguf.GGUFWriter(str(out), arch)
    skip = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture",
            "general.file_type"}
    for key, field in reader.fields.items():
        if key in skip or key.startswith("GGUF."):
            continue
        _copy_field(writer, key, field, gguf)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "F32"
                         else gguf.LlamaFileType.MOSTLY_F16)
    target = np.float32 if dtype == "F32" else np.float16
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type)
        is_norm = data.ndim == 1  # norms and biases stay float32, as llama.cpp expects
        writer.add_tensor(t.name, np.ascontiguousarray(
            data.astype(np.float32 if is_norm else target)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)


def _copy_field(writer: Any, key: str, field: Any, gguf: Any) -> None:
    """Copy one metadata field (scalar, string or array) from a reader to a writer."""
    vtype = field.types[0]
    if vtype == gguf.GGUFValueType.ARRAY:
        sub = field.types[1] if len(field.types) > 1 else gguf.GGUFValueType.INT32
        if sub == gguf.GGUFValueType.STRING:
            values: list[Any] = [bytes(field.parts[i]).decode("utf-8", "surrogateescape")
                                 for i in field.data]
        else:
            values = [field.parts[i].tolist()[0] for i in field.data]
        writer.add_key_value(key, values, vtype, sub_type=sub)
        return
    if vtype == gguf.GGUFValueType.STRING:
        writer.add_key_value(key, bytes(field.parts[field.data[0]]).decode("utf-8"), vtype)
        return
    writer.add_key_value(key, field.parts[field.data[0]].tolist()[0], vtype)
