"""The optional FAISS search agrees with the exact blocked search."""

from __future__ import annotations

from pathlib import Path

import torch

from driftscope_llm.attribution.index.ann import FaissSearcher
from driftscope_llm.attribution.index.feature_index import index_from_features
from driftscope_llm.attribution.methods.base import Block
from driftscope_llm.attribution.settings import parse_method_spec

K = 10
MIN_HNSW_RECALL = 0.9


def _index(tmp: Path, method: str, n: int = 3000, dim: int = 64):  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(n, dim, generator=gen) * torch.rand(n, 1, generator=gen)
    return index_from_features(feats, [f"ex{i}" for i in range(n)], tmp / method,
                               parse_method_spec(method), [Block("b", dim, dim)],
                               model_fingerprint="synthetic", corpus_hash_="synthetic",
                               shard_size=1000)


def test_flat_faiss_ranks_like_the_exact_search(tmp_path: Path) -> None:
    for method in ("repsim", "gradsim:dot"):
        index = _index(tmp_path, method)
        q = torch.randn(7, 64, generator=torch.Generator().manual_seed(1))
        exact_s, exact_i = index.search(q, K)
        flat_s, flat_i = FaissSearcher(index, kind="flat").search(q, K)
        assert torch.equal(exact_i, flat_i), method
        torch.testing.assert_close(exact_s, flat_s, rtol=1e-4, atol=1e-4)


def test_hnsw_finds_most_of_the_exact_top_k(tmp_path: Path) -> None:
    index = _index(tmp_path, "repsim")
    q = torch.randn(50, 64, generator=torch.Generator().manual_seed(2))
    _, exact_i = index.search(q, K)
    _, ann_i = FaissSearcher(index, kind="hnsw").search(q, K)
    hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(ann_i, exact_i, strict=True))
    assert hits / (K * q.shape[0]) >= MIN_HNSW_RECALL
