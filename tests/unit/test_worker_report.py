"""The worker's aggregate ranking (mean reciprocal rank over exemplars) and target lookup."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import ValidationError

from driftscope_llm.attribution.errors import IndexError_
from driftscope_llm.attribution.index.manifest import (
    CorpusIdentity,
    IndexManifest,
    ModelIdentity,
    write_manifest,
)
from driftscope_llm.services.config import WorkerSettings
from driftscope_llm.services.store.model import Exemplar, Incident
from driftscope_llm.services.worker.aggregate import aggregate_mrr, manifest_id, top_ids
from driftscope_llm.services.worker.settings import ModelTarget, find_target

TOL = 1e-12


@dataclass(frozen=True)
class H:
    id: str
    score: float
    rank: int


@dataclass(frozen=True)
class R:
    query_id: str
    results: list[H] = field(default_factory=list)


def ranked(qid: str, ids: list[str]) -> R:
    return R(qid, [H(i, 1.0 - 0.1 * n, n + 1) for n, i in enumerate(ids)])


def test_mrr_is_mean_of_reciprocal_ranks_with_zero_for_absent() -> None:
    rows = aggregate_mrr([ranked("q1", ["a", "b", "c"]), ranked("q2", ["b", "a", "d"])])
    by_id = {r.id: r for r in rows}
    assert abs(by_id["a"].mrr - (1 + 1 / 2) / 2) < TOL
    assert abs(by_id["c"].mrr - (1 / 3) / 2) < TOL
    assert abs(by_id["d"].mrr - (1 / 3) / 2) < TOL
    assert by_id["a"].hits == 2 and by_id["c"].hits == 1
    assert by_id["b"].best_rank == 1
    assert [r.rank for r in rows] == list(range(1, len(rows) + 1))
    assert all(0 < r.mrr <= 1 for r in rows)


def test_consistent_winner_beats_a_single_top_hit() -> None:
    # "x" is 2nd for all three exemplars; "y" is 1st for one of them only.
    rows = aggregate_mrr([ranked("q1", ["y", "x"]), ranked("q2", ["z", "x"]),
                          ranked("q3", ["w", "x"])])
    assert rows[0].id == "x"
    assert top_ids(rows, 1) == ["x"]
    assert top_ids([r.model_dump() for r in rows], 2) == top_ids(rows, 2)


def test_ties_are_broken_deterministically_and_order_of_queries_does_not_matter() -> None:
    qs = [ranked("q1", ["a", "b"]), ranked("q2", ["b", "a"]), ranked("q3", ["c", "d"])]
    forward = [r.id for r in aggregate_mrr(qs)]
    backward = [r.id for r in aggregate_mrr(list(reversed(qs)))]
    assert forward == backward
    assert aggregate_mrr(qs, top_k=2) == aggregate_mrr(qs)[:2]


def test_single_exemplar_keeps_its_ranking_and_empty_is_empty() -> None:
    rows = aggregate_mrr([ranked("q", ["a", "b", "c"])])
    assert [r.id for r in rows] == ["a", "b", "c"]
    assert [r.mrr for r in rows] == [1.0, 1 / 2, 1 / 3]
    assert aggregate_mrr([]) == []


def test_manifest_id_follows_the_manifest_bytes(tmp_path: Path) -> None:
    manifest = IndexManifest(
        status="complete", created="2025-01-06T10:00:00+00:00",
        model=ModelIdentity(fingerprint="fp"), corpus=CorpusIdentity(hash="c", count=1),
        settings={}, features={}, dtype="float16", shard_size=1, shards=())
    write_manifest(tmp_path, manifest)
    first = manifest_id(tmp_path)
    raw = (tmp_path / "manifest.json").read_bytes()
    assert first == hashlib.sha256(raw).hexdigest()[:16] and manifest_id(tmp_path) == first
    write_manifest(tmp_path, manifest.model_copy(update={"corpus": CorpusIdentity(hash="c",
                                                                                  count=2)}))
    assert manifest_id(tmp_path) != first
    (tmp_path / "manifest.json").write_text('{"a": 1}')  # no index: no identity
    with pytest.raises(IndexError_, match="not a driftscope index manifest"):
        manifest_id(tmp_path)


def test_target_lookup_prefers_model_at_version() -> None:
    specific = ModelTarget(model_dir=Path("/m7"), indexes={"repsim": Path("/i7")})
    general = ModelTarget(model_dir=Path("/m"), indexes={"gradsim": Path("/g"),
                                                         "repsim": Path("/i")})
    models = {"bot@v7": specific, "bot": general}
    assert find_target(models, "bot", "v7") == ("bot@v7", specific)
    assert find_target(models, "bot", "v8") == ("bot", general)
    assert find_target(models, "other", "v7") is None
    assert general.primary_method == "repsim"
    assert general.methods == ["repsim", "gradsim"]


def test_target_settings_refuse_what_cannot_run() -> None:
    with pytest.raises(ValidationError):
        ModelTarget(model_dir=Path("/m"), indexes={})
    with pytest.raises(ValidationError):
        ModelTarget(model_dir=Path("/m"), indexes={"repsim": Path("/i")},
                    default_method="gradsim")
    s = WorkerSettings(models={"bot": {"model_dir": "/m", "indexes": {"repsim": "/i"}}})
    assert s.models["bot"].top_k == 10 and s.group_id == "driftscope-worker"


def test_exemplars_without_text_are_skipped() -> None:
    pytest.importorskip("torch")
    from datetime import UTC, datetime

    from driftscope_llm.services.worker.job import exemplar_queries

    now = datetime.now(UTC)
    inc = Incident(id="i", opened_at=now, updated_at=now, model="m", model_version="v",
                   segment="all", signal="length", detector="ks", statistic=1.0, threshold=0.5,
                   effect_size=0.3, event_id="e", exemplars=[
                       Exemplar(event_id="e1", prompt="p", output="out"),
                       Exemplar(event_id="e2", prompt="p", output="  "),
                       Exemplar(event_id="e3", prompt=None, output="x"),
                       Exemplar(event_id="e4")])
    queries, skipped = exemplar_queries(inc, limit=10)
    assert [q.id for q in queries] == ["e1", "e3"] and queries[1].prompt == ""
    assert skipped == ["e2", "e4"]
    assert [q.id for q in exemplar_queries(inc, limit=1)[0]] == ["e1"]
