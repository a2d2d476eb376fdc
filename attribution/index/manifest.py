"""The index manifest: what an index was built from, and its shards.

``manifest.json`` beside the shards::

    {"format": "driftscope-attribution-index", "version": 1, "status": "building"|"complete",
     "model": {"fingerprint", "model_dir", "adapter_dir"},
     "corpus": {"hash", "count"},
     "settings": {...AttributionSettings...}, "features": {...feature key...},
     "dim": D, "dtype": "float16", "blocks": [{"name", "dim", "n_params"}],
     "shard_size": S, "shards": [{"file", "sha256", "start", "rows"}]}

Shards are safetensors files holding ``features`` (rows × D, unit-normalised in float32 then
stored in ``dtype``) and ``norms`` (float32 L2 norms, so raw features = features × norms), with
the row ids as JSON in the safetensors metadata (covered by the shard's sha256).
Written atomically (temporary file + rename) after every shard, which makes builds resumable.

A sharded build (:mod:`driftscope_llm.attribution.index.parts`) writes one manifest per part,
``manifest.part-00001-of-00004.json``, with ``"part": {"index", "count"}`` and only that part's
shards; merging the parts writes the ordinary ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.errors import IndexCorruptError, IndexError_, IndexMismatchError

__all__ = [
    "FORMAT",
    "MANIFEST",
    "check_identity",
    "file_sha256",
    "part_manifest_name",
    "read_manifest",
    "verify_shard",
    "write_manifest",
]

FORMAT = "driftscope-attribution-index"
MANIFEST = "manifest.json"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def part_manifest_name(index: int, count: int) -> str:
    """The manifest file of part ``index`` (0-based) of a build split in ``count`` parts."""
    return f"manifest.part-{index:05d}-of-{count:05d}.json"


def write_manifest(directory: Path, manifest: dict[str, Any], name: str = MANIFEST) -> None:
    """Write ``name`` atomically; concurrent writers (parts merging at once) never collide."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it private; readers may run as other users
    os.replace(tmp, directory / name)


def read_manifest(directory: Path, name: str = MANIFEST) -> dict[str, Any]:
    path = directory / name
    if not path.is_file():
        parts = sorted(directory.glob("manifest.part-*.json")) if directory.is_dir() else []
        if name == MANIFEST and parts:
            raise IndexError_(
                f"{directory} holds {len(parts)} part manifest(s) of a sharded build but no "
                f"{MANIFEST}; finish every part, then run `driftscope attribution index merge "
                f"{directory}`", path=str(directory))
        raise IndexError_(f"{directory} is not an index (no {name})", path=str(directory))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IndexError_(f"{path} is not valid JSON: {exc.msg}", path=str(directory)) from exc
    except UnicodeDecodeError as exc:
        raise IndexError_(f"{path} is not UTF-8 text", path=str(directory)) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise IndexError_(f"{path} is not a driftscope index manifest", path=str(directory))
    return data


def check_identity(directory: Path, manifest: dict[str, Any], expected: dict[str, Any]) -> None:
    """Raise :class:`IndexMismatchError` on the first of ``expected``'s fields that differs.

    ``expected`` maps a field path like ``model.fingerprint`` to the value this run has.
    """
    for dotted, value in expected.items():
        found: Any = manifest
        for part in dotted.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if found == value:
            continue
        if isinstance(found, dict) and isinstance(value, dict):
            for key in sorted(set(found) | set(value)):
                if found.get(key) != value.get(key):
                    raise IndexMismatchError(path=str(directory), field=f"{dotted}.{key}",
                                             expected=value.get(key), found=found.get(key))
        raise IndexMismatchError(path=str(directory), field=dotted, expected=value, found=found)


def verify_shard(directory: Path, entry: dict[str, Any]) -> Path:
    """The shard's path after checking it exists and matches its recorded sha256."""
    path = directory / str(entry["file"])
    if not path.is_file():
        raise IndexCorruptError(f"shard {path.name} is missing", path=str(directory),
                                shard=path.name)
    if file_sha256(path) != entry["sha256"]:
        raise IndexCorruptError(f"shard {path.name} fails its sha256 check", path=str(directory),
                                shard=path.name)
    return path
