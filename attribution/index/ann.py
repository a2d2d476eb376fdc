"""Optional FAISS search over an index's rows, for corpora too large for exhaustive scoring.

The default search (:meth:`attribution.index.feature_index.Index.search`) is exact: blocked matrix
products over every stored row. With millions of rows and many queries an approximate
nearest-neighbour graph answers in sub-linear time; this module builds one with FAISS (``pip install
'driftscope[faiss]'``), over the same vectors the exact search scores:

- cosine methods: the stored unit rows, queries normalised — inner product = cosine;
- dot methods: unit rows × norms — inner product = the method's dot score.

``kind="flat"`` is exact (``IndexFlatIP``; the same ranking as the default search, useful to
check the graph); ``kind="hnsw"`` is HNSW (Malkov & Yashunin 2018) with ``m`` links per node and
``ef_search`` candidates per query: higher ``ef_search`` trades speed for recall. Scores keep the
method's meaning and scale; only which rows are found can differ from the exact search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from driftscope_llm.services.errors import MissingExtraError

if TYPE_CHECKING:
    import torch

    from driftscope_llm.attribution.index.feature_index import Index

__all__ = ["FaissSearcher"]


class FaissSearcher:
    """A FAISS graph (or flat) index over ``index``'s rows, queried like ``Index.search``."""

    def __init__(self, index: Index, *, kind: Literal["flat", "hnsw"] = "hnsw", m: int = 32,
                 ef_construction: int = 80, ef_search: int = 128) -> None:
        try:
            import faiss
        except ImportError:
            raise MissingExtraError("faiss", "faiss") from None
        self.index = index
        self.cosine = index.method.is_cosine
        rows = [r.numpy() for r in (index.iter_raw_rows())]
        data = np.ascontiguousarray(np.concatenate(rows, axis=0), dtype=np.float32)
        if self.cosine:
            data /= np.maximum(np.linalg.norm(data, axis=1, keepdims=True), 1e-30)
        dim = data.shape[1]
        self._faiss: Any
        if kind == "flat":
            self._faiss = faiss.IndexFlatIP(dim)
        else:
            self._faiss = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
            self._faiss.hnsw.efConstruction = ef_construction
            self._faiss.hnsw.efSearch = ef_search
        self._faiss.add(data)

    def search(self, queries: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k (scores, row indices), each Q × k, for raw query features (Q × D)."""
        import torch

        q = self.index.method.prepare_queries(queries.float(), self.index)
        if self.cosine:
            q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-30)
        k = min(top_k, self.index.count)
        scores, idx = self._faiss.search(np.ascontiguousarray(q.numpy(), dtype=np.float32), k)
        return torch.from_numpy(scores), torch.from_numpy(idx.astype(np.int64))
