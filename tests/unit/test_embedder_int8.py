"""The int8 embedder: how it is made, what it keeps of fp32, and what batching must not change.

One real fp32 export of all-MiniLM-L6-v2 (the ``embedder-export`` extra) is made for the module;
the int8 model is added to it by :func:`quantize_embedder` with onnxruntime alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.output_corpus import KINDS, corpus
from driftscope_llm.services.collector.build import open_embedder
from driftscope_llm.services.collector.embedder import (
    QUANTIZATION,
    OnnxEmbedder,
    export_embedder,
    has_int8,
    quantize_embedder,
)
from driftscope_llm.services.collector.settings import EmbedderSettings
from driftscope_llm.services.errors import ConfigError

MEAN_COSINE = 0.99  # the fidelity the int8 default is held to (docs/collector.md)
WORST_COSINE = 0.96  # no kind of output may fall far from its fp32 embedding (short ones are worst)
BATCH_TOLERANCE = 1e-4  # fp32: batching, order and padding change nothing beyond noise


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = export_embedder(tmp_path_factory.mktemp("embedder"), quantize=False)
    quantize_embedder(out)
    return out


def test_the_manifest_records_the_quantisation_and_a_stale_int8_is_refused(
        export: Path, tmp_path: Path) -> None:
    manifest = json.loads((export / "driftscope-embedder.json").read_text())
    assert manifest["int8"] and manifest["quantization"] == QUANTIZATION
    assert has_int8(export)
    stale = tmp_path / "stale"
    shutil.copytree(export, stale)
    older = {**manifest, "quantization": None}  # an int8 made per tensor, before the scheme
    (stale / "driftscope-embedder.json").write_text(json.dumps(older))
    assert not has_int8(stale)
    with pytest.raises(ConfigError, match="export-embedder"):
        OnnxEmbedder(stale, quantized=True)
    # opening it the collector's way quantises it again, with onnxruntime alone
    embedder = open_embedder(EmbedderSettings(model_dir=stale, quantized=True),
                             export_if_missing=False)
    assert has_int8(stale) and embedder.quantized


def test_int8_stays_close_to_fp32_on_every_kind_of_output(export: Path) -> None:
    texts = corpus(270, seed=11)
    fp32 = OnnxEmbedder(export).encode([t for _, t in texts])
    int8 = OnnxEmbedder(export, quantized=True).encode([t for _, t in texts])
    cos = np.sum(fp32 * int8, axis=1)
    assert cos.mean() >= MEAN_COSINE, cos.mean()
    by_kind = {k: float(cos[[i for i, (kk, _) in enumerate(texts) if kk == k]].min())
               for k in KINDS}
    assert min(by_kind.values()) >= WORST_COSINE, by_kind


@pytest.mark.parametrize("quantized", [False, True])
def test_batching_and_order_do_not_change_an_embedding(export: Path, quantized: bool) -> None:
    """fp32 within float noise; int8 exactly (one text per call: dynamic quantisation's
    activation scales would otherwise depend on the batch-mates)."""
    texts = [t for _, t in corpus(40, seed=12)]
    embedder = OnnxEmbedder(export, quantized=quantized, batch_size=7)
    together = embedder.encode(texts)
    alone = np.stack([embedder.encode([t])[0] for t in texts])
    reverse = embedder.encode(texts[::-1])[::-1]
    tolerance = 0.0 if quantized else BATCH_TOLERANCE
    assert np.abs(together - alone).max() <= tolerance
    assert np.abs(together - reverse).max() <= tolerance
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, 384)
