"""Build, open and query a feature index: safetensors shards + a JSON manifest.

An index is built once per (model, corpus, method settings). Building runs the method's
featurizer over the corpus in batches, on CUDA when present, and writes one shard per
``shard_size`` examples; an interrupted build resumes, keeping every completed shard whose
sha256 and ids still match. Opening an index with a model, corpus or settings different from
the manifest is refused (:class:`IndexMismatchError`).

A query featurizes the queries with the same model, lets the method transform them
(:meth:`Method.prepare_queries`), and scores them against the stored rows by blocked matrix
products — at most ``block_rows`` × Q scores exist at a time, never N × Q — merging the top-k of
every block. Shards are read memory-mapped one block at a time
(:mod:`driftscope_llm.attribution.index.shard_files`), so memory stays bounded by the block, not
the index. A build can be split across processes or machines
(:mod:`driftscope_llm.attribution.index.parts`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from driftscope_llm.attribution.data import Example, corpus_hash
from driftscope_llm.attribution.errors import IndexError_, IndexMismatchError
from driftscope_llm.attribution.formatting import ExampleLike, collate
from driftscope_llm.attribution.index.manifest import (
    MANIFEST,
    BlockEntry,
    CorpusIdentity,
    IndexManifest,
    ModelIdentity,
    PartOf,
    ShardEntry,
    StoredFile,
    check_identity,
    file_sha256,
    read_manifest,
    verify_shard,
    write_manifest,
)
from driftscope_llm.attribution.index.shard_files import MappedShard, write_shard
from driftscope_llm.attribution.methods.base import Block, Method, get_method
from driftscope_llm.attribution.modeling import LoadedModel
from driftscope_llm.attribution.settings import AttributionSettings, parse_method_spec
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = [
    "Hit", "Index", "QueryResult", "build_index", "featurize", "index_from_features",
    "open_index",
]

Progress = Callable[[int, int], None]


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
    queries: bool = False,
) -> torch.Tensor:
    """Raw float32 features (N × D, on CPU) of ``examples`` under ``method``'s featurizer (its
    query featurizer when ``queries``).

    The next batch is tokenised in a background thread while the model runs on the current one.
    """
    feat = method.query_featurizer(model) if queries else method.featurizer(model)
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


def _kept_shards(out: Path, manifest: IndexManifest, ids: list[str],
                 wanted: set[int]) -> list[ShardEntry]:
    """Entries of ``manifest`` for chunk starts in ``wanted`` whose file and ids still match."""
    kept = []
    for entry in manifest.shards:
        if entry.start not in wanted:
            continue
        try:
            shard = MappedShard(verify_shard(out, entry))
        except IndexError_:
            continue
        if shard.ids == ids[entry.start : entry.start + entry.rows]:
            kept.append(entry)
    return kept


def _blocks(blocks: Sequence[Block]) -> tuple[BlockEntry, ...]:
    return tuple(BlockEntry(name=b.name, dim=b.dim, n_params=b.n_params) for b in blocks)


def build_shards(
    model: LoadedModel,
    corpus: Sequence[Example],
    out: Path,
    settings: AttributionSettings,
    *,
    manifest_name: str = MANIFEST,
    part: tuple[int, int] = (0, 1),
    batch_size: int = 16,
    shard_size: int = 4096,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> IndexManifest:
    """Featurize the chunks of ``corpus`` that belong to ``part`` and return the manifest.

    The corpus is cut into chunks of ``shard_size`` examples in corpus order; chunk ``j`` is
    written as ``shard-{j:05d}.safetensors`` and belongs to part ``j mod N`` of ``part = (i, N)``
    (``(0, 1)``: every chunk). The manifest (``manifest_name`` in ``out``) is rewritten
    atomically after every shard; a rerun keeps every finished shard whose sha256 and ids match.
    """
    method = get_method(settings)
    out.mkdir(parents=True, exist_ok=True)
    ids = [e.id for e in corpus]
    chash = corpus_hash(corpus)
    old: IndexManifest | None = None
    if (out / manifest_name).is_file():
        old = read_manifest(out, manifest_name)
        try:
            check_identity(out, old, _identity(model, chash, settings))
            shard_size = old.shard_size
        except IndexMismatchError:
            if not overwrite:
                raise
            for entry in old.shards:
                (out / entry.file).unlink(missing_ok=True)
            old = None
    i, n = part
    starts = [s for j, s in enumerate(range(0, len(corpus), shard_size)) if j % n == i]
    kept = _kept_shards(out, old, ids, set(starts)) if old is not None else []
    state, kept = _method_state(method, model, corpus, out, old, batch_size, kept)
    manifest = IndexManifest(
        status="building", created=datetime.now(UTC).isoformat(),
        model=ModelIdentity(fingerprint=model.fingerprint, model_dir=model.model_dir,
                            adapter_dir=model.adapter_dir),
        corpus=CorpusIdentity(hash=chash, count=len(corpus)),
        settings=settings.model_dump(mode="json"), features=settings.feature_key(),
        dtype=settings.storage_dtype, shard_size=shard_size, shards=tuple(kept), state=state,
        part=PartOf(index=i, count=n) if n > 1 else None)
    done_starts = {e.start for e in kept}
    total = sum(min(shard_size, len(corpus) - s) for s in starts)
    done = sum(e.rows for e in kept)
    if progress:
        progress(done, total)
    for start in starts:
        if start in done_starts:
            continue
        part_rows = corpus[start : start + shard_size]

        def step(k: int) -> None:
            nonlocal done
            done += k
            if progress:
                progress(done, total)

        feats = featurize(method, model, part_rows, batch_size=batch_size, on_batch=step)
        name = f"shard-{start // shard_size:05d}.safetensors"
        write_shard(out / name, feats, ids[start : start + shard_size], settings.storage_dtype)
        entry = ShardEntry(file=name, sha256=file_sha256(out / name), start=start,
                           rows=len(part_rows))
        manifest = manifest.model_copy(update={"shards": tuple(sorted(
            (*manifest.shards, entry), key=lambda e: e.start))})
        write_manifest(out, manifest, manifest_name)
    feat = method.featurizer(model)
    blocks = feat.blocks
    feat.close()
    manifest = manifest.model_copy(update={"status": "complete",
                                           "dim": sum(b.dim for b in blocks),
                                           "blocks": _blocks(blocks)})
    write_manifest(out, manifest, manifest_name)
    return manifest


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
    every batch. Batch and shard size change speed only, not scores. To split a build across
    processes or machines see :func:`driftscope_llm.attribution.index.parts.build_part`.
    """
    settings = settings or AttributionSettings()
    out = Path(out_dir)
    build_shards(model, corpus, out, settings, batch_size=batch_size, shard_size=shard_size,
                 progress=progress, overwrite=overwrite)
    return open_index(out, model=model, corpus=corpus, settings=settings)


def _method_state(method: Method, model: LoadedModel, corpus: Sequence[Example], out: Path,
                  previous: IndexManifest | None, batch_size: int,
                  kept: list[ShardEntry]) -> tuple[StoredFile | None, list[ShardEntry]]:
    """Fit (or reload) state the method needs before featurizing (EK-FAC factors, ...).

    The state is fitted on the whole corpus, stored beside the shards as ``method.state_file``
    and recorded in the manifest with its sha256 (``state``), so it falls under the same
    identity and corruption checks as the shards. Returns the manifest's ``state`` entry (or
    ``None``) and the previous build's shards to keep (none when the state had to be fitted
    again).
    """
    if method.state_file is None:
        return None, kept
    path = out / method.state_file
    entry = None if previous is None else previous.state
    if entry is not None:
        try:
            verify_shard(out, entry)
            method.load_state(path)
            return entry, kept
        except IndexError_:
            pass
    method.fit(model, corpus, batch_size)
    method.save_state(path)
    return StoredFile(file=method.state_file, sha256=file_sha256(path)), []


def _attach_state(path: Path, manifest: IndexManifest, method: Method) -> None:
    """Load the stored state a method needs, checked by sha256 like a shard."""
    if method.state_file is None:
        return
    entry = manifest.state
    if entry is None or entry.file != method.state_file:
        raise IndexError_(f"index at {path} has no {method.settings.method} state; rebuild it "
                          f"with --method {method.settings.spec}", path=str(path))
    method.load_state(verify_shard(path, entry))


def index_from_features(
    features: torch.Tensor | Iterable[torch.Tensor],
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
    ``features`` may also be an iterable of row chunks, each written as one shard (so an index
    larger than memory can be written).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(features, torch.Tensor):
        whole = features
        chunks: Iterable[torch.Tensor] = (whole[s : s + shard_size]
                                          for s in range(0, whole.shape[0], shard_size))
    else:
        chunks = features
    shards: list[ShardEntry] = []
    start, dim = 0, 0
    for n, chunk in enumerate(chunks):
        name = f"shard-{n:05d}.safetensors"
        rows, dim = int(chunk.shape[0]), int(chunk.shape[1])
        write_shard(out / name, chunk.float(), list(ids[start : start + rows]),
                    settings.storage_dtype)
        shards.append(ShardEntry(file=name, sha256=file_sha256(out / name), start=start,
                                 rows=rows))
        start += rows
    manifest = IndexManifest(
        status="complete", created=datetime.now(UTC).isoformat(),
        model=ModelIdentity(fingerprint=model_fingerprint),
        corpus=CorpusIdentity(hash=corpus_hash_, count=start),
        settings=settings.model_dump(mode="json"), features=settings.feature_key(),
        dtype=settings.storage_dtype, shard_size=shard_size, shards=tuple(shards), dim=dim,
        blocks=_blocks(blocks))
    write_manifest(out, manifest)
    return open_index(out)


#: Below this many queries, float16 rows are scored in float16 (:func:`_half_query`); from it
#: on, converting a block to float32 once and using the float32 product is faster (measured on
#: a 16,384 × 1,024 block, one CPU thread: float16 is ~80x faster at 1 query, even at ~48).
HALF_MAX_QUERIES = 48


def _half_query(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``q`` (Q × D float32) as float16 rows of max |q| = 1, and the per-query scale.

    Float16 rows are scored in float16 to pick candidates (:func:`_half_top_k`): on CPU that is
    about as fast as the float32 product over rows held in memory, while converting the rows to
    float32 first costs ten times more. The scaling rules out overflow and underflow; each
    approximate score comes back rounded to float16 (relative error about 2⁻¹¹).
    """
    scale = q.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
    return (q / scale).half(), scale


def _half_top_k(q: torch.Tensor, half: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor,
                norms: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of one float16 block: float16 scores pick ``2k + 16`` candidates, which are then
    rescored exactly in float32 (so returned scores and their order are the float32 ones; a
    true top-k row is missed only if more than ``k + 16`` rows tie with it to within 2⁻¹¹)."""
    q_half, q_scale = half
    approx = (q_half @ rows.T).float() * q_scale
    if norms is not None:
        approx *= norms
    cand = approx.topk(min(2 * k + 16, approx.shape[1]), dim=1).indices
    exact = torch.stack([rows[cand[i]].float() @ q[i] for i in range(q.shape[0])])
    if norms is not None:
        exact *= norms[cand]
    top_s, sel = exact.topk(min(k, exact.shape[1]), dim=1)
    return top_s, cand.gather(1, sel)


class Index:
    """An opened index: shards read memory-mapped, scored block by block (module docstring).

    ``in_memory=True`` loads every row as float32 instead (N × D × 4 bytes of RAM; faster for
    many queries against a small index). Scores are the same either way.
    """

    def __init__(self, path: Path, manifest: IndexManifest, method: Method,
                 model: LoadedModel | None, block_rows: int = 16384, *,
                 in_memory: bool = False, verify: bool = True) -> None:
        self.path = path
        self.manifest = manifest
        self.method = method
        self.model = model
        self.block_rows = block_rows
        self.blocks = [Block(b.name, b.dim, b.n_params) for b in manifest.blocks or ()]
        self.ids: list[str] = []
        self._shards: list[MappedShard] = []
        for entry in manifest.shards:
            shard_path = verify_shard(path, entry) if verify else path / entry.file
            shard = MappedShard(shard_path, in_memory=in_memory)
            self.ids.extend(shard.ids)
            self._shards.append(shard)
        self._prepared: dict[str, torch.Tensor] = {}

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def settings(self) -> AttributionSettings:
        return self.method.settings

    def iter_raw_rows(self) -> Iterator[torch.Tensor]:
        """Stored rows as raw float32 features (unit × norm), ``block_rows`` at a time."""
        for shard in self._shards:
            for _, unit, norms in shard.blocks(self.block_rows):
                yield unit.float() * norms[:, None]

    def search(self, queries: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k (scores, row indices), each Q × k, for raw query features (Q × D)."""
        q = self.method.prepare_queries(queries.float(), self)
        cosine = self.method.is_cosine
        if cosine:
            q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-30)
        k = min(top_k, self.count)
        best_s = torch.full((q.shape[0], 0), float("-inf"))
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.long)
        half = _half_query(q) if q.shape[0] < HALF_MAX_QUERIES else None
        offset = 0
        for shard in self._shards:
            for s, rows, norms in shard.blocks(self.block_rows):
                if half is not None and rows.dtype == torch.float16:
                    top_s, top_i = _half_top_k(q, half, rows, None if cosine else norms, k)
                else:
                    scores = q @ rows.float().T
                    if not cosine:
                        scores *= norms
                    top_s, top_i = scores.topk(min(k, scores.shape[1]), dim=1)
                del rows
                best_s = torch.cat([best_s, top_s], dim=1)
                best_i = torch.cat([best_i, top_i + offset + s], dim=1)
                if best_s.shape[1] > k:
                    best_s, sel = best_s.topk(k, dim=1)
                    best_i = best_i.gather(1, sel)
            offset += shard.rows
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
        :class:`driftscope_llm.attribution.index.ann.FaissSearcher` for very large corpora.
        """
        if self.model is None:
            raise IndexError_("open the index with a model to featurize queries",
                              path=str(self.path))
        feats = featurize(self.method, self.model, queries, batch_size=batch_size, queries=True)
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
    in_memory: bool = False,
    verify: bool = True,
    block_rows: int = 16384,
) -> Index:
    """Open a complete index, checking it against what this run uses.

    ``model`` (fingerprint) and ``corpus`` (hash) are checked when given. ``method`` may name
    another method whose features are the same (e.g. ``lissa`` or ``gradsim:dot`` on a
    ``gradsim`` index); a method needing other features is refused with
    :class:`IndexMismatchError`, as is ``settings`` whose feature key differs.

    Rows are read memory-mapped, ``block_rows`` at a time, unless ``in_memory``. ``verify``
    checks every shard's sha256 first (reads every byte once; ``False`` skips it for a trusted,
    very large index).
    """
    p = Path(path)
    manifest = read_manifest(p)
    if not manifest.is_complete:
        raise IndexError_(f"index at {p} is incomplete; rerun the build to resume it", path=str(p))
    stored = manifest.attribution_settings()
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
    chosen = get_method(settings)
    _attach_state(p, manifest, chosen)
    return Index(p, manifest, chosen, model, block_rows, in_memory=in_memory, verify=verify)
