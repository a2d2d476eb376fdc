"""Index shards on disk: written once, read memory-mapped block by block.

A shard is a safetensors file (see :mod:`driftscope_llm.attribution.index.manifest`) with
``features`` (rows × D unit rows, float16 or float32), ``norms`` (float32) and the row ids in its
metadata.
:class:`MappedShard` parses the safetensors header itself and serves rows ``[start, stop)`` as
float32 by mapping only that byte range of the file (``mmap`` at the page boundary below it),
handing it out as a zero-copy tensor, and unmapping it when the next block is asked for. So
scoring an index of any size keeps at most one block of rows mapped (``block_rows × D × 2``
bytes for float16 rows) plus its ``block_rows × Q`` scores, while the operating system's page
cache (not the process) keeps recently read shards warm. Float16 rows are scored in float16
(see :meth:`driftscope_llm.attribution.index.feature_index.Index.search`): converting them to
float32 first would cost ten times the matrix product on CPU.

``in_memory=True`` instead loads all rows as float32 once (the pre-mmap behaviour): faster for
many queries against a small index, ``N × D × 4`` bytes of RAM.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from driftscope_llm.attribution.errors import IndexCorruptError
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
    from safetensors.torch import save_file
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = ["DTYPES", "MappedShard", "write_shard"]

DTYPES = {"float16": torch.float16, "float32": torch.float32}
_NP = {"F16": np.float16, "F32": np.float32}
_TORCH = {np.float16: torch.float16, np.float32: torch.float32}


def write_shard(path: Path, feats: torch.Tensor, ids: list[str], dtype: str) -> None:
    """Write raw float32 features as unit rows (in ``dtype``) + float32 norms, atomically."""
    norms = feats.norm(dim=1)
    unit = feats / norms.clamp_min(1e-30).unsqueeze(1)
    tmp = path.with_suffix(".tmp")
    save_file(
        {"features": unit.to(DTYPES[dtype]).contiguous(), "norms": norms.contiguous()},
        str(tmp), metadata={"ids": json.dumps(ids)},
    )
    tmp.replace(path)


class MappedShard:
    """One shard, its ids and norms in memory and its rows read block by block (module doc)."""

    def __init__(self, path: Path, *, in_memory: bool = False) -> None:
        self.path = path
        try:
            with path.open("rb") as fh:
                header, self._data_start = self._header(fh, path)
                feats = header["features"]
                self._np_dtype = _NP[feats["dtype"]]
                self.rows, self.dim = (int(x) for x in feats["shape"])
                self._feat_begin = self._data_start + int(feats["data_offsets"][0])
                size = self.rows * self.dim * np.dtype(self._np_dtype).itemsize
                if self._data_start + int(feats["data_offsets"][1]) > path.stat().st_size or \
                        int(feats["data_offsets"][1]) - int(feats["data_offsets"][0]) != size:
                    raise ValueError("features do not fit the file")
                self.ids: list[str] = json.loads(header["__metadata__"]["ids"])
                self.norms = self._read(fh, "norms", header)
        except (KeyError, ValueError, TypeError, struct.error) as exc:
            raise IndexCorruptError(f"shard {path.name} is not a driftscope shard: {exc}",
                                    path=str(path.parent), shard=path.name) from exc
        if len(self.ids) != self.rows or self.norms.shape[0] != self.rows:
            raise IndexCorruptError(f"shard {path.name} has inconsistent row counts",
                                    path=str(path.parent), shard=path.name)
        self._loaded: torch.Tensor | None = None
        if in_memory:
            self._loaded = self._map(0, self.rows)

    @staticmethod
    def _header(fh: BinaryIO, path: Path) -> tuple[dict[str, Any], int]:
        n = int(struct.unpack("<Q", fh.read(8))[0])
        if n > path.stat().st_size:
            raise ValueError("header length past the end of the file")
        header: dict[str, Any] = json.loads(fh.read(n))
        return header, 8 + n

    def _read(self, fh: BinaryIO, name: str, header: dict[str, Any]) -> torch.Tensor:
        meta = header[name]
        begin, end = (int(x) for x in meta["data_offsets"])
        fh.seek(self._data_start + begin)
        raw = fh.read(end - begin)
        arr = np.frombuffer(raw, dtype=_NP[meta["dtype"]]).astype(np.float32)
        return torch.from_numpy(arr.reshape([int(x) for x in meta["shape"]]))

    def _open_range(self, start: int, stop: int) -> tuple[mmap.mmap, torch.Tensor]:
        """A private mapping of rows ``[start, stop)`` and a zero-copy tensor view of it.

        ``ACCESS_COPY`` (copy-on-write, never written) gives a writable buffer, so torch takes
        it without copying or warning; nothing is copied unless written.
        """
        item = np.dtype(self._np_dtype).itemsize
        offset = self._feat_begin + start * self.dim * item
        aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
        length = offset - aligned + (stop - start) * self.dim * item
        with self.path.open("rb") as fh:
            mm = mmap.mmap(fh.fileno(), length, offset=aligned, access=mmap.ACCESS_COPY)
        if hasattr(mmap, "MADV_SEQUENTIAL"):
            mm.madvise(mmap.MADV_SEQUENTIAL)
        view = torch.frombuffer(mm, dtype=_TORCH[self._np_dtype], count=(stop - start) * self.dim,
                                offset=offset - aligned)
        return mm, view.view(stop - start, self.dim)

    def _map(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``[start, stop)`` as a new float32 tensor, through a short-lived mapping."""
        if stop <= start:
            return torch.zeros(0, self.dim)
        mm, view = self._open_range(start, stop)
        rows = view.float() if view.dtype != torch.float32 else view.clone()
        del view
        mm.close()
        return rows

    def blocks(self, block_rows: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(start, unit rows, norms)`` for consecutive blocks of ``block_rows``.

        Rows come in the stored dtype (float16 rows are a zero-copy view of the mapped file,
        valid only until the next block is requested) or float32 when loaded in memory; the
        norms are float32. Convert with ``.float()`` to keep a block.
        """
        for s in range(0, self.rows, block_rows):
            e = min(s + block_rows, self.rows)
            if self._loaded is not None:
                yield s, self._loaded[s:e], self.norms[s:e]
                continue
            mm, rows = self._open_range(s, e)
            try:
                yield s, rows, self.norms[s:e]
            finally:
                del rows
                # a caller that kept the view keeps the map open until the view is freed
                with contextlib.suppress(BufferError):
                    mm.close()
