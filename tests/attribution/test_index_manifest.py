"""The index manifest as a typed record: indexes written before it existed still open, and a
manifest read and written back keeps its bytes; what is not a manifest is refused with
IndexError_ naming the field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from driftscope_llm.attribution.errors import IndexError_
from driftscope_llm.attribution.index.feature_index import index_from_features, open_index
from driftscope_llm.attribution.index.manifest import (
    IndexManifest,
    file_sha256,
    manifest_digest,
    part_manifest_name,
    read_manifest,
    write_manifest,
)
from driftscope_llm.attribution.methods.base import Block
from driftscope_llm.attribution.settings import AttributionSettings

SETTINGS = AttributionSettings(storage_dtype="float32")
IDS = [f"ex-{i}" for i in range(7)]


def _old_text(manifest: dict[str, Any]) -> bytes:
    """How the code before the typed record wrote a manifest (json.dumps of a dict)."""
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def _shards(tmp_path: Path) -> list[dict[str, Any]]:
    """Two shards written by the library, listed as the old code listed them."""
    feats = torch.randn(len(IDS), 4, generator=torch.Generator().manual_seed(0))
    index_from_features(feats, IDS, tmp_path, SETTINGS, [Block("all", 4, 4)],
                        model_fingerprint="fp", corpus_hash_="c", shard_size=4)
    return [{"file": f"shard-{n:05d}.safetensors",
             "sha256": file_sha256(tmp_path / f"shard-{n:05d}.safetensors"),
             "start": start, "rows": rows} for n, (start, rows) in enumerate(((0, 4), (4, 3)))]


def _old_complete(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """A complete manifest in the shape build_shards wrote it (a dict literal, keys as then)."""
    return {
        "format": "driftscope-attribution-index", "version": 1, "status": "complete",
        "created": "2025-01-06T10:00:00.123456+00:00",
        "model": {"fingerprint": "fp-old", "model_dir": "/models/ft", "adapter_dir": None},
        "corpus": {"hash": "corpus-old", "count": len(IDS)},
        "settings": SETTINGS.model_dump(mode="json"), "features": SETTINGS.feature_key(),
        "dtype": "float32", "shard_size": 4, "shards": shards, "dim": 4,
        "blocks": [{"name": "all", "dim": 4, "n_params": 4}],
    }


def test_an_index_written_by_the_old_code_opens_and_keeps_its_bytes(tmp_path: Path) -> None:
    old = _old_complete(_shards(tmp_path))
    raw = _old_text(old)
    (tmp_path / "manifest.json").write_bytes(raw)

    index = open_index(tmp_path)
    assert index.ids == IDS and index.count == len(IDS)
    assert index.manifest.model.fingerprint == "fp-old"
    assert index.manifest.model.model_dir == "/models/ft"
    assert index.manifest.model.adapter_dir is None
    assert index.manifest.corpus.count == 7 and index.manifest.dim == 4
    assert [(e.start, e.rows) for e in index.manifest.shards] == [(0, 4), (4, 3)]
    assert manifest_digest(tmp_path) == hashlib.sha256(raw).hexdigest()[:16]

    write_manifest(tmp_path, read_manifest(tmp_path))
    assert (tmp_path / "manifest.json").read_bytes() == raw


def test_a_building_part_with_state_and_unknown_fields_round_trips(tmp_path: Path) -> None:
    shards = _shards(tmp_path)
    old = _old_complete(shards[1:])
    for key in ("dim", "blocks"):  # a building manifest has neither yet
        del old[key]
    old.update(status="building", part={"index": 1, "count": 2}, note="kept as written",
               state={"file": "ekfac.safetensors", "sha256": "0" * 64})
    raw = _old_text(old)
    name = part_manifest_name(1, 2)
    (tmp_path / name).write_bytes(raw)
    m = read_manifest(tmp_path, name)
    assert not m.is_complete and m.part is not None and (m.part.index, m.part.count) == (1, 2)
    assert m.state is not None and m.state.file == "ekfac.safetensors"
    assert m.dim is None and m.blocks is None and m.rows == 3
    write_manifest(tmp_path, m, name)
    assert (tmp_path / name).read_bytes() == raw


def test_the_library_writes_what_the_old_code_wrote(tmp_path: Path) -> None:
    old = _old_complete(_shards(tmp_path))
    typed = IndexManifest.model_validate(old)
    write_manifest(tmp_path, typed)
    assert (tmp_path / "manifest.json").read_bytes() == _old_text(old)


@pytest.mark.parametrize(("change", "field"), [
    (lambda m: m.pop("corpus"), "corpus"),
    (lambda m: m["shards"][0].update(file="../outside.safetensors"), "shards.0.file"),
    (lambda m: m["shards"][1].update(rows=-1), "shards.1.rows"),
    (lambda m: m.update(status="half-done"), "status"),
    (lambda m: m["model"].update(fingerprint=None), "model.fingerprint"),
])
def test_a_malformed_manifest_is_refused_naming_the_field(tmp_path: Path, change: Any,
                                                          field: str) -> None:
    old = _old_complete(_shards(tmp_path))
    change(old)
    (tmp_path / "manifest.json").write_bytes(_old_text(old))
    with pytest.raises(IndexError_, match=f"not a valid index manifest: {field}:"):
        open_index(tmp_path)


def test_settings_this_version_cannot_use_are_refused(tmp_path: Path) -> None:
    old = _old_complete(_shards(tmp_path))
    old["settings"]["method"] = "no-such-method"
    (tmp_path / "manifest.json").write_bytes(_old_text(old))
    with pytest.raises(IndexError_, match="settings this version cannot use"):
        read_manifest(tmp_path)
