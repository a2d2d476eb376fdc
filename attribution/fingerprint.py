"""Model fingerprints that do not read every byte of every weight file each time.

An index manifest records the fingerprint of the model it was built with, and a query with a
model whose fingerprint differs is refused. Hashing a 14 GB model in full takes minutes, so the
fingerprint is a sha256 over per-file *digests* computed as follows:

* **small files** (config, tokenizer, a LoRA adapter: anything up to ``sample_blocks ×
  block_size`` bytes, 64 MiB by default) are hashed in full;
* **large safetensors files**: the header (its 8-byte length and the JSON that names every
  tensor, its dtype, shape and byte range), the file size, and ``sample_blocks`` blocks of
  ``block_size`` bytes spread evenly over the data section, first and last block included;
* **other large files** (``.bin``): the size and the same evenly spaced blocks.

Each file's digest is cached (:class:`FingerprintCache`, a JSON file) under the key
``(resolved path, size, mtime_ns)``: a second fingerprint of an unchanged model reads only the
``stat`` of each file.

What it guarantees — and what it does not:

* a change to the config, tokenizer or adapter files, to any tensor's name, dtype or shape, to a
  file's size, or to any byte inside a sampled block changes the fingerprint;
* a fine-tune that changes every weight (full fine-tune, merged LoRA) changes sampled bytes, so it
  is caught with certainty in practice;
* a change confined to bytes *outside* the sampled blocks of a large weight file (e.g. editing
  one weight in place) is **not** seen. Neither is a file rewritten with the same size and a
  restored ``mtime_ns`` while its cached digest is kept. Use ``full=True`` (or a fresh cache
  with ``sample_blocks`` large enough to cover the file) where that matters.

File names are part of the hash, directory paths are not: a copied model keeps its fingerprint.
Only top-level files with the suffixes json, safetensors, bin, model, txt, jinja are read.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["FingerprintCache", "file_digest", "model_fingerprint"]

HASHED_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt", ".jinja")
#: Version of the digest scheme; part of every cache key and digest.
SCHEME = "sampled-v1"
_CHUNK = 1 << 20


def _hash_range(h: Any, fh: BinaryIO, start: int, length: int) -> None:
    fh.seek(start)
    left = length
    while left > 0:
        chunk = fh.read(min(_CHUNK, left))
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)


def _safetensors_data_start(fh: BinaryIO, size: int) -> int | None:
    """Byte offset of the data section, or None if this is not a well-formed safetensors file."""
    head = fh.read(8)
    if len(head) < 8:
        return None
    n = int(struct.unpack("<Q", head)[0])
    if n > size - 8:
        return None
    return 8 + n


def file_digest(path: Path, *, sample_blocks: int = 64, block_size: int = 1 << 20,
                full: bool = False) -> str:
    """The digest of one file (module docstring): full, or header + size + sampled blocks."""
    size = path.stat().st_size
    h = hashlib.sha256(f"{SCHEME}:{size}:".encode())
    with path.open("rb") as fh:
        if full or size <= sample_blocks * block_size:
            _hash_range(h, fh, 0, size)
            return "full:" + h.hexdigest()
        start = 0
        if path.suffix == ".safetensors" and (data := _safetensors_data_start(fh, size)):
            _hash_range(h, fh, 0, data)
            start = data
        span = size - start
        last = max(span - block_size, 0)
        for j in range(sample_blocks):
            offset = start + (last * j) // max(sample_blocks - 1, 1)
            h.update(offset.to_bytes(8, "little"))
            _hash_range(h, fh, offset, block_size)
    return "sampled:" + h.hexdigest()


class FingerprintCache:
    """Per-file digests keyed by (resolved path, size, mtime_ns), kept in one JSON file.

    Concurrent writers (several builders on one node) are safe: each write replaces the file
    atomically, and a lost update only costs a later recomputation. A cache file that cannot be
    read or written is ignored (digests are then computed every time).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, str] | None = None

    @classmethod
    def default(cls) -> FingerprintCache:
        """The per-user cache, ``~/.cache/driftscope/fingerprints.json``."""
        return cls(Path.home() / ".cache" / "driftscope" / "fingerprints.json")

    def _load(self) -> dict[str, str]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    if isinstance(data, dict):
                        self._entries = {str(k): str(v) for k, v in data.items()}
                except (OSError, ValueError):
                    pass
        return self._entries

    @staticmethod
    def key(path: Path, sample_blocks: int, block_size: int) -> str:
        st = path.stat()
        return f"{SCHEME}:{sample_blocks}:{block_size}:{path.resolve()}:{st.st_size}:" \
               f"{st.st_mtime_ns}"

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def put(self, key: str, digest: str) -> None:
        entries = self._load()
        entries[key] = digest
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".fingerprints-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entries, fh)
            os.replace(tmp, self.path)
        except OSError:
            pass


def _hash_dir(h: Any, root: Path, tag: str, cache: FingerprintCache | None,
              sample_blocks: int, block_size: int, full: bool) -> None:
    for f in sorted(p for p in root.iterdir() if p.is_file() and p.suffix in HASHED_SUFFIXES):
        key = None if (cache is None or full) else FingerprintCache.key(f, sample_blocks,
                                                                         block_size)
        digest = cache.get(key) if (cache is not None and key is not None) else None
        if digest is None:
            digest = file_digest(f, sample_blocks=sample_blocks, block_size=block_size,
                                 full=full)
            if cache is not None and key is not None:
                cache.put(key, digest)
        h.update(f"{tag}/{f.name}\0{digest}\0".encode())


def model_fingerprint(
    model_dir: str | Path,
    adapter_dir: str | Path | None = None,
    *,
    cache: FingerprintCache | None = None,
    sample_blocks: int = 64,
    block_size: int = 1 << 20,
    full: bool = False,
) -> str:
    """sha256 over the per-file digests of the model and adapter directories (module docstring).

    ``cache`` (default: none) skips files whose path, size and mtime_ns are unchanged;
    ``full=True`` hashes every byte (and bypasses the cache).
    """
    h = hashlib.sha256(SCHEME.encode())
    _hash_dir(h, Path(model_dir), "model", cache, sample_blocks, block_size, full)
    if adapter_dir is not None:
        _hash_dir(h, Path(adapter_dir), "adapter", cache, sample_blocks, block_size, full)
    return h.hexdigest()
