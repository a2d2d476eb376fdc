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

:class:`IndexManifest` is that file as a typed record: :func:`read_manifest` is its one reader
(it validates every field and refuses what is not a manifest with :class:`IndexError_`), and
:func:`write_manifest` writes it back in the same bytes (keys sorted, two-space indent, optional
fields absent until they are set), so an index written before the record existed opens, resumes
and merges as it did. Fields this version does not know are kept as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from driftscope_llm.attribution.errors import IndexCorruptError, IndexError_, IndexMismatchError
from driftscope_llm.attribution.settings import AttributionSettings
from driftscope_llm.services.errors import AttributionError

__all__ = [
    "FORMAT",
    "MANIFEST",
    "BlockEntry",
    "CorpusIdentity",
    "IndexManifest",
    "ModelIdentity",
    "PartOf",
    "ShardEntry",
    "StoredFile",
    "check_identity",
    "file_sha256",
    "manifest_digest",
    "part_manifest_name",
    "read_manifest",
    "verify_shard",
    "write_manifest",
]

FORMAT: Final = "driftscope-attribution-index"
MANIFEST = "manifest.json"


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelIdentity(_Entry):
    """The model the features came from: its fingerprint, and where it was loaded from
    (``None`` for an index written from precomputed features)."""

    fingerprint: str
    model_dir: str | None = None
    adapter_dir: str | None = None


class CorpusIdentity(_Entry):
    """The whole corpus the index covers (its hash and example count), even in a part."""

    hash: str
    count: int = Field(ge=0)


class StoredFile(_Entry):
    """A file beside the manifest (a shard, a method's fitted state) and its sha256."""

    file: str
    sha256: str

    @field_validator("file")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or Path(v).name != v or v in (".", ".."):
            raise ValueError(f"{v!r} is not a file name in the index directory")
        return v


class ShardEntry(StoredFile):
    """A shard: ``rows`` corpus examples from position ``start``."""

    start: int = Field(ge=0)
    rows: int = Field(ge=0)


class BlockEntry(_Entry):
    """One parameter block of the features (its columns and parameter count)."""

    name: str
    dim: int = Field(ge=0)
    n_params: int = Field(ge=0)


class PartOf(_Entry):
    """Part ``index`` (0-based) of a build split in ``count`` parts."""

    index: int = Field(ge=0)
    count: int = Field(ge=1)


#: fields written only once they have a value (a building index has no ``dim`` yet, only a
#: part has ``part``, only a merged index ``merged_from``)
_OPTIONAL = ("dim", "blocks", "state", "part", "merged_from")


class IndexManifest(BaseModel):
    """``manifest.json`` (module docstring). ``settings`` holds the
    :class:`~driftscope_llm.attribution.settings.AttributionSettings` as saved (checked to be
    valid on read; :meth:`attribution_settings` gives them typed), ``features`` their feature
    key. ``dim`` and ``blocks`` are set once the build is complete."""

    model_config = ConfigDict(frozen=True, extra="allow")

    format: Literal["driftscope-attribution-index"] = FORMAT
    version: int = 1
    status: Literal["building", "complete"]
    created: str
    model: ModelIdentity
    corpus: CorpusIdentity
    settings: dict[str, Any]
    features: dict[str, Any]
    dtype: str
    shard_size: int = Field(ge=1)
    shards: tuple[ShardEntry, ...]
    dim: int | None = Field(default=None, ge=0)
    blocks: tuple[BlockEntry, ...] | None = None
    state: StoredFile | None = None
    part: PartOf | None = None
    merged_from: int | None = Field(default=None, ge=1)

    @property
    def is_complete(self) -> bool:
        return self.status == "complete"

    @property
    def rows(self) -> int:
        """Corpus examples held by the shards listed here."""
        return sum(e.rows for e in self.shards)

    def attribution_settings(self) -> AttributionSettings:
        """The saved method settings, typed."""
        return AttributionSettings(**self.settings)

    def field(self, dotted: str) -> Any:
        """The JSON value at a dotted path such as ``model.fingerprint`` (``None`` if absent),
        for comparing manifests field by field and naming the field that differs."""
        found: Any = self.to_json()
        for key in dotted.split("."):
            found = found.get(key) if isinstance(found, dict) else None
        return found

    def to_json(self) -> dict[str, Any]:
        """The JSON object :func:`write_manifest` writes (optional fields only when set)."""
        return self.model_dump(mode="json",
                               exclude={k for k in _OPTIONAL if getattr(self, k) is None})


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def part_manifest_name(index: int, count: int) -> str:
    """The manifest file of part ``index`` (0-based) of a build split in ``count`` parts."""
    return f"manifest.part-{index:05d}-of-{count:05d}.json"


def write_manifest(directory: Path, manifest: IndexManifest, name: str = MANIFEST) -> None:
    """Write ``name`` atomically; concurrent writers (parts merging at once) never collide."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it private; readers may run as other users
    os.replace(tmp, directory / name)


def read_manifest(directory: Path, name: str = MANIFEST) -> IndexManifest:
    """The manifest ``name`` in ``directory``, validated; :class:`IndexError_` when there is
    none, it is not a driftscope index manifest, or a field is missing or wrong."""
    return _load(directory, name)[0]


def manifest_digest(directory: Path, name: str = MANIFEST) -> str:
    """Identity of an index as built: the first 16 hex digits of the sha256 of its manifest's
    bytes (which must be a valid manifest)."""
    return hashlib.sha256(_load(directory, name)[1]).hexdigest()[:16]


def _load(directory: Path, name: str) -> tuple[IndexManifest, bytes]:
    path = directory / name
    if not path.is_file():
        parts = sorted(directory.glob("manifest.part-*.json")) if directory.is_dir() else []
        if name == MANIFEST and parts:
            raise IndexError_(
                f"{directory} holds {len(parts)} part manifest(s) of a sharded build but no "
                f"{MANIFEST}; finish every part, then run `driftscope attribution index merge "
                f"{directory}`", path=str(directory))
        raise IndexError_(f"{directory} is not an index (no {name})", path=str(directory))
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise IndexError_(f"{path} is not UTF-8 text", path=str(directory)) from exc
    except json.JSONDecodeError as exc:
        raise IndexError_(f"{path} is not valid JSON: {exc.msg}", path=str(directory)) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise IndexError_(f"{path} is not a driftscope index manifest", path=str(directory))
    try:
        manifest = IndexManifest.model_validate(data)
        manifest.attribution_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise IndexError_(f"{path} is not a valid index manifest: {where}: {first['msg']}",
                          path=str(directory)) from exc
    except AttributionError as exc:
        raise IndexError_(f"{path} holds settings this version cannot use: {exc}",
                          path=str(directory)) from exc
    return manifest, raw


def check_identity(directory: Path, manifest: IndexManifest,
                   expected: Mapping[str, Any]) -> None:
    """Raise :class:`IndexMismatchError` on the first of ``expected``'s fields that differs.

    ``expected`` maps a field path like ``model.fingerprint`` to the value this run has.
    """
    for dotted, value in expected.items():
        found = manifest.field(dotted)
        if found == value:
            continue
        if isinstance(found, dict) and isinstance(value, dict):
            for key in sorted(set(found) | set(value)):
                if found.get(key) != value.get(key):
                    raise IndexMismatchError(path=str(directory), field=f"{dotted}.{key}",
                                             expected=value.get(key), found=found.get(key))
        raise IndexMismatchError(path=str(directory), field=dotted, expected=value, found=found)


def verify_shard(directory: Path, entry: StoredFile) -> Path:
    """The shard's path after checking it exists and matches its recorded sha256."""
    path = directory / entry.file
    if not path.is_file():
        raise IndexCorruptError(f"shard {path.name} is missing", path=str(directory),
                                shard=path.name)
    if file_sha256(path) != entry.sha256:
        raise IndexCorruptError(f"shard {path.name} fails its sha256 check", path=str(directory),
                                shard=path.name)
    return path
