"""Memory-mapped indexes: the same scores as rows held in memory, and memory bounded by the
block, not the index."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.index_mmap import measure, write_synthetic
from driftscope_llm.attribution.index.feature_index import index_from_features, open_index
from driftscope_llm.attribution.methods.base import Block
from driftscope_llm.attribution.settings import parse_method_spec

#: float32 products in another summation order (float16 candidates are rescored in float32)
F32_RTOL = 1e-5
MB = 1 << 20


@pytest.mark.parametrize("spec", ["repsim", "gradsim:dot", "lissa", "datainf"])
@pytest.mark.parametrize("storage", ["float16", "float32"])
def test_mapped_scores_equal_in_memory_scores(tmp_path: Path, spec: str, storage: str) -> None:
    gen = torch.Generator().manual_seed(0)
    n, dim = 2500, 48
    feats = torch.randn(n, dim, generator=gen) * torch.rand(n, 1, generator=gen) * 1e-3
    settings = parse_method_spec(spec).model_copy(update={"storage_dtype": storage})
    index_from_features(feats, [f"ex{i}" for i in range(n)], tmp_path, settings,
                        [Block("a", 16, 64), Block("b", 32, 64)], model_fingerprint="m",
                        corpus_hash_="c", shard_size=700)
    mapped = open_index(tmp_path, block_rows=300)
    memory = open_index(tmp_path, in_memory=True, block_rows=1000)
    for q_count in (1, 60):  # float16 scoring below HALF_MAX_QUERIES, float32 from it on
        q = torch.randn(q_count, dim, generator=gen) * 1e-3
        ms, mi = mapped.search(q, 20)
        es, ei = memory.search(q, 20)
        torch.testing.assert_close(ms, es, rtol=F32_RTOL, atol=1e-9)
        # ranks agree except where two scores are equal to within float32 rounding
        differ = mi != ei
        assert bool((ms[differ] - es[differ]).abs().le(F32_RTOL * es[differ].abs()).all())
    rows = torch.cat(list(mapped.iter_raw_rows()))
    assert rows.dtype == torch.float32 and rows.shape == (n, dim)
    torch.testing.assert_close(rows, torch.cat(list(memory.iter_raw_rows())))


def test_resident_memory_is_bounded_by_the_block_not_the_index(tmp_path: Path) -> None:
    """100k × 1,024 float16 rows (200 MB on disk, 400 MB as float32), queried in a fresh
    process: the mapped index's peak growth stays a small fraction of the index."""
    rows, dim, block = 100_000, 1024, 4096
    path = write_synthetic(tmp_path / "idx", rows, dim)
    disk = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    assert disk > 190 * MB
    mapped = measure(path, "mmap", dim, repeat=1, block_rows=block, batches=(1, 4))
    memory = measure(path, "memory", dim, repeat=1, block_rows=block, batches=(1, 4))
    assert mapped["rows"] == memory["rows"] == rows
    # in memory: all rows as float32 (the measurement sees the rows)
    assert memory["peak_growth"] > 1.5 * disk, memory
    # mapped: one block (8 MB of float16 at most, 16 MB as float32 for the exact path) plus the
    # ids, norms and allocator overheads; far below the 200 MB of rows
    assert mapped["peak_growth"] < 0.3 * disk, mapped


def test_a_truncated_shard_is_refused_even_unverified(tmp_path: Path) -> None:
    from driftscope_llm.attribution.errors import IndexCorruptError

    feats = torch.randn(50, 8)
    index_from_features(feats, [f"ex{i}" for i in range(50)], tmp_path,
                        parse_method_spec("repsim"), [Block("h", 8, 8)], model_fingerprint="m",
                        corpus_hash_="c")
    shard = next(tmp_path.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-64])
    with pytest.raises(IndexCorruptError, match="not a driftscope shard"):
        open_index(tmp_path, verify=False)
    with pytest.raises(IndexCorruptError, match="sha256"):
        open_index(tmp_path)
