"""Build, open and query a feature index: safetensors shards + a JSON manifest.

An index is built once per (model, corpus, method settings). Building runs the method's
featurizer over the corpus in batches, on CUDA when present, and writes one shard per
``shard_size`` examples; an interrupted build resumes, keeping every completed shard whose
sha256 and ids still match. Opening an index with a model, corpus or settings different from
the manifest is refused (:class:`IndexMismatchError`).

A query featurizes the queries with the same model, lets the method transform them
(:meth:`Method.prepare_queries`), and scores them against the stored rows by blocked matrix
products — at most ``block_rows`` × Q scores exist at a time, never N × Q — merging the top-k of
every block.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from driftscope_llm.attribution.data import Example, corpus_hash
from driftscope_llm.attribution.errors import IndexError_, IndexMismatchError
from driftscope_llm.attribution.formatting import ExampleLike, collate
from driftscope_llm.attribution.manifest import (
    FORMAT,
    check_identity,
    file_sha256,
    read_manifest,
    verify_shard,
    write_manifest,
)
from driftscope_llm.attribution.methods.base import Block, Method, get_method
from driftscope_llm.attribution.modeling import LoadedModel
from driftscope_llm.attribution.settings import AttributionSettings, parse_method_spec
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = [
    "Hit", "Index", "QueryResult", "build_index", "featurize", "index_from_features",
    "open_index",
]

Progress = Callable[[int, int], None]
_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class Hit:
    """One attributed training example: its ``id``, ``score`` (higher = more responsible; scale
    per method) and ``rank`` (1 = most responsible)."""

    id: str
    score: float
    rank: int


@dataclass(frozen=True)
class QueryResult:
    """Ranked attribution for one query, best first."""

    query_id: str
    method: str
    results: list[Hit]

    def to_json(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "method": self.method,
            "results": [{"id": h.id, "score": h.score, "rank": h.rank} for h in self.results],
        }


def featurize(
    method: Method,
    model: LoadedModel,
    examples: Sequence[ExampleLike],
    *,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Raw float32 features (N × D, on CPU) of ``examples`` under ``method``'s featurizer.

    The next batch is tokenised in a background thread while the model runs on the current one.
    """
    feat = method.featurizer(model)
    starts = list(range(0, len(examples), batch_size))

    def prepare(start: int) -> Any:
        chunk = examples[start : start + batch_size]
        return collate(model.tokenizer, chunk, method.settings.max_length)

    out = []
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(prepare, starts[0]) if starts else None
            for i, start in enumerate(starts):
                assert pending is not None
                batch = pending.result().to(model.device)
                pending = pool.submit(prepare, starts[i + 1]) if i + 1 < len(starts) else None
                out.append(feat(batch).float().cpu())
                if on_batch is not None:
                    on_batch(min(batch_size, len(examples) - start))
    finally:
        feat.close()
    return torch.cat(out) if out else torch.zeros(0, 0)


def _identity(model: LoadedModel, corpus_h: str, settings: AttributionSettings) -> dict[str, Any]:
    return {"model.fingerprint": model.fingerprint, "corpus.hash": corpus_h,
            "features": settings.feature_key()}


def _write_shard(path: Path, feats: torch.Tensor, ids: list[str], dtype: str) -> None:
    norms = feats.norm(dim=1)
    unit = feats / norms.clamp_min(1e-30).unsqueeze(1)
    tmp = path.with_suffix(".tmp")
    save_file(
        {"features": unit.to(_DTYPES[dtype]).contiguous(), "norms": norms.contiguous()},
        str(tmp), metadata={"ids": json.dumps(ids)},
    )
    tmp.replace(path)


def _kept_shards(out: Path, manifest: dict[str, Any], ids: list[str]) -> list[dict[str, Any]]:
    kept = []
    for entry in manifest.get("shards", []):
        try:
            verify_shard(out, entry)
        except IndexError_:
            continue
        start, rows = int(entry["start"]), int(entry["rows"])
        with safe_open(str(out / entry["file"]), framework="pt") as fh:
            stored = json.loads((fh.metadata() or {}).get("ids", "[]"))
        if stored == ids[start : start + rows]:
            kept.append(entry)
    return kept


def build_index(
    model: LoadedModel,
    corpus: Sequence[Example],
    out_dir: str | Path,
    settings: AttributionSettings | None = None,
    *,
    batch_size: int = 16,
    shard_size: int = 4096,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> Index:
    """Featurize ``corpus`` into an index at ``out_dir`` and open it (module docstring).

    Resumes a partial build of the same identity; an existing index of another model, corpus or
    feature settings is refused unless ``overwrite``. ``progress(done, total)`` is called after
    every batch. Batch and shard size change speed only, not scores.
    """
    settings = settings or AttributionSettings()
    method = get_method(settings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = [e.id for e in corpus]
    chash = corpus_hash(corpus)
    kept: list[dict[str, Any]] = []
    if (out / "manifest.json").is_file():
        old = read_manifest(out)
        try:
            check_identity(out, old, _identity(model, chash, settings))
            shard_size = int(old.get("shard_size", shard_size))
            kept = _kept_shards(out, old, ids)
        except IndexMismatchError:
            if not overwrite:
                raise
            for entry in old.get("shards", []):
                (out / entry["file"]).unlink(missing_ok=True)
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": 1, "status": "building",
        "created": datetime.now(UTC).isoformat(),
        "model": {"fingerprint": model.fingerprint, "model_dir": model.model_dir,
                  "adapter_dir": model.adapter_dir},
        "corpus": {"hash": chash, "count": len(corpus)},
        "settings": settings.model_dump(mode="json"), "features": settings.feature_key(),
        "dtype": settings.storage_dtype, "shard_size": shard_size, "shards": kept,
    }
    done_starts = {int(e["start"]) for e in kept}
    done = sum(int(e["rows"]) for e in kept)
    if progress:
        progress(done, len(corpus))
    blocks: list[Block] | None = None
    for start in range(0, len(corpus), shard_size):
        if start in done_starts:
            continue
        part = corpus[start : start + shard_size]

        def step(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, len(corpus))

        feats = featurize(method, model, part, batch_size=batch_size, on_batch=step)
        name = f"shard-{start // shard_size:05d}.safetensors"
        _write_shard(out / name, feats, ids[start : start + shard_size], settings.storage_dtype)
        manifest["shards"].append({"file": name, "sha256": file_sha256(out / name),
                                   "start": start, "rows": len(part)})
        manifest["shards"].sort(key=lambda e: int(e["start"]))
        write_manifest(out, manifest)
    if blocks is None:
        feat = method.featurizer(model)
        blocks = feat.blocks
        feat.close()
    manifest.update(status="complete", dim=sum(b.dim for b in blocks),
                    blocks=[{"name": b.name, "dim": b.dim, "n_params": b.n_params} for b in blocks])
    write_manifest(out, manifest)
    return open_index(out, model=model, corpus=corpus, settings=settings)


def index_from_features(
    features: torch.Tensor,
    ids: Sequence[str],
    out_dir: str | Path,
    settings: AttributionSettings,
    blocks: Sequence[Block],
    *,
    model_fingerprint: str,
    corpus_hash_: str,
    shard_size: int = 65536,
) -> Index:
    """Write an index from precomputed raw features (N × D) and open it (without a model).

    For features computed elsewhere (another worker, a benchmark); the manifest records the
    given fingerprint and corpus hash, and queries go through :meth:`Index.results`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for n, start in enumerate(range(0, features.shape[0], shard_size)):
        name = f"shard-{n:05d}.safetensors"
        _write_shard(out / name, features[start : start + shard_size].float(),
                     list(ids[start : start + shard_size]), settings.storage_dtype)
        shards.append({"file": name, "sha256": file_sha256(out / name), "start": start,
                       "rows": min(shard_size, features.shape[0] - start)})
    manifest = {
        "format": FORMAT, "version": 1, "status": "complete",
        "created": datetime.now(UTC).isoformat(),
        "model": {"fingerprint": model_fingerprint, "model_dir": None, "adapter_dir": None},
        "corpus": {"hash": corpus_hash_, "count": features.shape[0]},
        "settings": settings.model_dump(mode="json"), "features": settings.feature_key(),
        "dtype": settings.storage_dtype, "shard_size": shard_size, "shards": shards,
        "dim": int(features.shape[1]),
        "blocks": [{"name": b.name, "dim": b.dim, "n_params": b.n_params} for b in blocks],
    }
    write_manifest(out, manifest)
    return open_index(out)


class Index:
    """An opened index: rows in memory (float32), scored by blocked matrix products."""

    def __init__(self, path: Path, manifest: dict[str, Any], method: Method,
                 model: LoadedModel | None, block_rows: int = 16384) -> None:
        self.path = path
        self.manifest = manifest
        self.method = method
        self.model = model
        self.block_rows = block_rows
        self.blocks = [Block(b["name"], int(b["dim"]), int(b["n_params"]))
                       for b in manifest["blocks"]]
        self.ids: list[str] = []
        self._units: list[torch.Tensor] = []
        self._norms: list[torch.Tensor] = []
        for entry in manifest["shards"]:
            shard = verify_shard(path, entry)
            with safe_open(str(shard), framework="pt") as fh:
                self.ids.extend(json.loads((fh.metadata() or {})["ids"]))
                self._units.append(fh.get_tensor("features").float())
                self._norms.append(fh.get_tensor("norms").float())
        self._prepared: dict[str, torch.Tensor] = {}

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def settings(self) -> AttributionSettings:
        return self.method.settings

    def iter_raw_rows(self) -> Iterator[torch.Tensor]:
        """Stored rows as raw float32 features (unit × norm), ``block_rows`` at a time."""
        for unit, norms in zip(self._units, self._norms, strict=True):
            for s in range(0, unit.shape[0], self.block_rows):
                yield unit[s : s + self.block_rows] * norms[s : s + self.block_rows, None]

    def search(self, queries: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k (scores, row indices), each Q × k, for raw query features (Q × D)."""
        q = self.method.prepare_queries(queries.float(), self)
        cosine = self.method.is_cosine
        if cosine:
            q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-30)
        k = min(top_k, self.count)
        best_s = torch.full((q.shape[0], 0), float("-inf"))
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.long)
        offset = 0
        for unit, norms in zip(self._units, self._norms, strict=True):
            for s in range(0, unit.shape[0], self.block_rows):
                rows = unit[s : s + self.block_rows]
                scores = q @ rows.T
                if not cosine:
                    scores *= norms[s : s + self.block_rows]
                kk = min(k, scores.shape[1])
                top_s, top_i = scores.topk(kk, dim=1)
                best_s = torch.cat([best_s, top_s], dim=1)
                best_i = torch.cat([best_i, top_i + offset + s], dim=1)
                if best_s.shape[1] > k:
                    best_s, sel = best_s.topk(k, dim=1)
                    best_i = best_i.gather(1, sel)
            offset += unit.shape[0]
        order = best_s.argsort(dim=1, descending=True, stable=True)
        return best_s.gather(1, order), best_i.gather(1, order)

    def query(
        self,
        queries: Sequence[ExampleLike],
        top_k: int = 10,
        *,
        batch_size: int = 16,
        query_ids: Sequence[str] | None = None,
        searcher: Searcher | None = None,
    ) -> list[QueryResult]:
        """Attribute each query to the ``top_k`` most responsible corpus examples.

        ``searcher`` replaces the exact blocked search, e.g. with an
        :class:`driftscope_llm.attribution.ann.FaissSearcher` for very large corpora.
        """
        if self.model is None:
            raise IndexError_("open the index with a model to featurize queries",
                              path=str(self.path))
        feats = featurize(self.method, self.model, queries, batch_size=batch_size)
        if query_ids is None:
            query_ids = [str(getattr(q, "id", i)) for i, q in enumerate(queries)]
        return self.results(feats, top_k, query_ids, searcher)

    def results(self, feats: torch.Tensor, top_k: int, query_ids: Sequence[str],
                searcher: Searcher | None = None) -> list[QueryResult]:
        """Ranked results for precomputed raw query features."""
        scores, idx = (searcher or self).search(feats, top_k)
        return [
            QueryResult(qid, self.settings.spec, [
                Hit(self.ids[int(i)], float(s), r + 1)
                for r, (s, i) in enumerate(zip(scores[n], idx[n], strict=True))
            ])
            for n, qid in enumerate(query_ids)
        ]


class Searcher(Protocol):
    """Anything that finds the top-k rows for raw query features, like :meth:`Index.search`."""

    def search(self, queries: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]: ...


def open_index(
    path: str | Path,
    *,
    model: LoadedModel | None = None,
    method: str | AttributionSettings | None = None,
    corpus: Sequence[Example] | None = None,
    settings: AttributionSettings | None = None,
) -> Index:
    """Open a complete index, checking it against what this run uses.

    ``model`` (fingerprint) and ``corpus`` (hash) are checked when given. ``method`` may name
    another method whose features are the same (e.g. ``lissa`` or ``gradsim:dot`` on a
    ``gradsim`` index); a method needing other features is refused with
    :class:`IndexMismatchError`, as is ``settings`` whose feature key differs.
    """
    p = Path(path)
    manifest = read_manifest(p)
    if manifest.get("status") != "complete":
        raise IndexError_(f"index at {p} is incomplete; rerun the build to resume it", path=str(p))
    stored = AttributionSettings(**manifest["settings"])
    if settings is None:
        settings = stored
    if isinstance(method, AttributionSettings):
        settings = method
    elif method is not None:
        settings = parse_method_spec(method, base=stored)
    expected: dict[str, Any] = {"features": settings.feature_key()}
    if model is not None:
        expected["model.fingerprint"] = model.fingerprint
    if corpus is not None:
        expected["corpus.hash"] = corpus_hash(corpus)
    check_identity(p, manifest, expected)
    return Index(p, manifest, get_method(settings), model)
