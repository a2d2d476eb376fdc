"""Model fingerprints: what they guarantee (docs in attribution/fingerprint.py), and the cache."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file

from driftscope_llm.attribution.fingerprint import FingerprintCache, file_digest, model_fingerprint

#: Small sampling so a 1 MiB test file is sampled (4 blocks of 4 KiB), not hashed in full.
SAMPLING = {"sample_blocks": 4, "block_size": 4096}


def _model(root: Path, *, weights: torch.Tensor | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    w = torch.arange(512 * 512, dtype=torch.float32).reshape(512, 512) if weights is None \
        else weights
    save_file({"layer.weight": w}, str(root / "model.safetensors"))
    return root


def _data_start(path: Path) -> int:
    with path.open("rb") as fh:
        return 8 + int(struct.unpack("<Q", fh.read(8))[0])


def _poke(path: Path, offset: int) -> None:
    """Flip one byte in place (one weight changes; size and header stay)."""
    with path.open("r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))


def test_large_safetensors_are_sampled_and_changes_in_samples_or_header_are_seen(
        tmp_path: Path) -> None:
    root = _model(tmp_path / "m")
    weights = root / "model.safetensors"
    assert file_digest(weights, **SAMPLING).startswith("sampled:")
    base = model_fingerprint(root, **SAMPLING)
    assert model_fingerprint(root, **SAMPLING) == base
    # one weight inside the first sampled block (the first weight of the data section)
    _poke(weights, _data_start(weights))
    changed = model_fingerprint(root, **SAMPLING)
    assert changed != base
    _poke(weights, _data_start(weights))  # restore
    assert model_fingerprint(root, **SAMPLING) == base
    # same bytes, another dtype/shape in the header: seen
    _model(tmp_path / "m2", weights=torch.arange(512 * 512, dtype=torch.float32)
           .reshape(256, 1024))
    assert model_fingerprint(tmp_path / "m2", **SAMPLING) != base
    # config change: small files are hashed in full
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 9}))
    assert model_fingerprint(root, **SAMPLING) != base


def test_documented_blind_spot_and_full_mode(tmp_path: Path) -> None:
    """A change between sampled blocks is not seen by sampling (as documented); full is."""
    root = _model(tmp_path / "m")
    weights = root / "model.safetensors"
    sampled, full = model_fingerprint(root, **SAMPLING), model_fingerprint(root, full=True)
    middle = _data_start(weights) + 4096 + 100  # after block 0, before block 1 (at ~1/3)
    _poke(weights, middle)
    assert model_fingerprint(root, **SAMPLING) == sampled
    assert model_fingerprint(root, full=True) != full


def test_small_files_are_hashed_in_full_and_copies_keep_the_fingerprint(tmp_path: Path) -> None:
    root = _model(tmp_path / "a")
    weights = root / "model.safetensors"
    assert file_digest(weights).startswith("full:")  # 1 MiB < 64 × 1 MiB default sample
    base = model_fingerprint(root)
    copy = tmp_path / "b"
    copy.mkdir()
    for f in root.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert model_fingerprint(copy) == base
    _poke(weights, _data_start(weights) + 4096 + 100)
    assert model_fingerprint(root) != base


def test_cache_hit_does_not_reread(tmp_path: Path) -> None:
    root = _model(tmp_path / "m")
    weights = root / "model.safetensors"
    cache_file = tmp_path / "cache.json"
    first = model_fingerprint(root, cache=FingerprintCache(cache_file), **SAMPLING)
    assert len(json.loads(cache_file.read_text())) == 2  # config + weights
    # rewrite sampled bytes but keep size and mtime_ns: only a reread could notice
    st = weights.stat()
    _poke(weights, _data_start(weights))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert model_fingerprint(root, cache=FingerprintCache(cache_file), **SAMPLING) == first
    assert model_fingerprint(root, **SAMPLING) != first  # no cache: the change is seen
    # a new mtime is a cache miss: the file is read again
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert model_fingerprint(root, cache=FingerprintCache(cache_file), **SAMPLING) != first


def test_unwritable_cache_is_ignored(tmp_path: Path) -> None:
    root = _model(tmp_path / "m")
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = FingerprintCache(blocker / "sub" / "cache.json")  # parent is a file: cannot write
    assert model_fingerprint(root, cache=cache) == model_fingerprint(root)
