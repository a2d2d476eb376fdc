"""Index invariants: batch size, shard count and corpus order do not change scores."""

from __future__ import annotations

import json
import random

import pytest
import torch

from driftscope_llm.attribution.errors import IndexCorruptError, IndexError_, IndexMismatchError
from driftscope_llm.attribution.index.feature_index import build_index, open_index
from driftscope_llm.attribution.settings import AttributionSettings, parse_method_spec

from .conftest import SCORE_ATOL_FP16, SCORE_ATOL_FP32

METHODS = ["repsim:mean_response", "repsim:last_prompt", "gradsim:cosine", "gradsim:dot",
           "lissa", "datainf"]


def _scores(index, queries) -> dict[tuple[str, str], float]:
    res = index.query(queries, top_k=index.count)
    return {(r.query_id, h.id): h.score for r in res for h in r.results}


def _assert_same(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    keys = sorted(a)
    ta = torch.tensor([a[k] for k in keys])
    tb = torch.tensor([b[k] for k in keys])
    scale = max(float(ta.abs().max()), 1.0) if atol == SCORE_ATOL_FP32 else 1.0
    torch.testing.assert_close(ta, tb, rtol=1e-3, atol=atol * scale)


@pytest.mark.parametrize("spec", METHODS)
def test_invariant_to_batch_shards_and_order(gpt2_model, planted_corpus, tmp_path, spec) -> None:
    corpus = planted_corpus[:60]
    queries = planted_corpus[60:64]
    s = parse_method_spec(spec, base=AttributionSettings(storage_dtype="float32"))
    ref = _scores(build_index(gpt2_model, corpus, tmp_path / "a", s, batch_size=16,
                              shard_size=1000), queries)
    shuffled = corpus[:]
    random.Random(3).shuffle(shuffled)
    other = _scores(build_index(gpt2_model, shuffled, tmp_path / "b", s, batch_size=5,
                                shard_size=7), queries)
    _assert_same(ref, other, SCORE_ATOL_FP32)


def test_fp16_storage_is_close_to_fp32(gpt2_model, planted_corpus, tmp_path) -> None:
    corpus, queries = planted_corpus[:40], planted_corpus[40:43]
    a = _scores(build_index(gpt2_model, corpus, tmp_path / "32",
                            AttributionSettings(storage_dtype="float32")), queries)
    b = _scores(build_index(gpt2_model, corpus, tmp_path / "16",
                            AttributionSettings(storage_dtype="float16")), queries)
    _assert_same(a, b, SCORE_ATOL_FP16)


def test_blocked_search_matches_brute_force(gpt2_model, planted_corpus, tmp_path) -> None:
    s = AttributionSettings(method="gradsim", variant="dot", storage_dtype="float32")
    index = build_index(gpt2_model, planted_corpus[:50], tmp_path / "i", s, shard_size=13)
    index.block_rows = 4
    rows = torch.cat(list(index.iter_raw_rows()))
    q = torch.randn(3, rows.shape[1])
    scores, idx = index.search(q, top_k=7)
    full = q @ rows.T
    want_s, want_i = full.topk(7, dim=1)
    torch.testing.assert_close(scores, want_s, rtol=1e-4, atol=1e-4)
    assert torch.equal(idx, want_i)


def test_resume_keeps_completed_shards(gpt2_model, planted_corpus, tmp_path) -> None:
    corpus = planted_corpus[:40]
    out = tmp_path / "r"

    class Stop(Exception):
        pass

    def interrupt(done: int, total: int) -> None:
        if done >= 25:
            raise Stop

    with pytest.raises(Stop):
        build_index(gpt2_model, corpus, out, batch_size=5, shard_size=10, progress=interrupt)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "building"
    assert [e["start"] for e in manifest["shards"]] == [0, 10]
    with pytest.raises(IndexError_, match="incomplete"):
        open_index(out)
    first = (out / "shard-00000.safetensors").stat().st_mtime_ns
    seen: list[int] = []
    index = build_index(gpt2_model, corpus, out, batch_size=5, shard_size=99,
                        progress=lambda d, t: seen.append(d))
    assert seen[0] == 20  # resumed after the two completed shards (shard size from manifest)
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == first
    assert index.count == 40 and index.ids == [e.id for e in corpus]
    fresh = build_index(gpt2_model, corpus, tmp_path / "fresh", batch_size=5, shard_size=10)
    _assert_same(_scores(index, corpus[:2]), _scores(fresh, corpus[:2]), SCORE_ATOL_FP16)


def test_mismatches_are_refused(gpt2_model, llama_model, planted_corpus, tmp_path) -> None:
    corpus = planted_corpus[:20]
    out = tmp_path / "m"
    build_index(gpt2_model, corpus, out)
    with pytest.raises(IndexMismatchError) as err:
        open_index(out, model=llama_model)
    assert err.value.field == "model.fingerprint"
    with pytest.raises(IndexMismatchError) as err:
        open_index(out, model=gpt2_model, method="repsim:last_prompt")
    assert err.value.field == "features.variant"
    with pytest.raises(IndexMismatchError) as err:
        open_index(out, corpus=planted_corpus[:21])
    assert err.value.field == "corpus.hash"
    with pytest.raises(IndexMismatchError):
        build_index(gpt2_model, corpus, out, AttributionSettings(method="gradsim"))
    build_index(gpt2_model, corpus, out, AttributionSettings(method="gradsim"), overwrite=True)
    assert open_index(out, model=gpt2_model, method="lissa").settings.method == "lissa"


def test_corrupt_shard_is_refused(gpt2_model, planted_corpus, tmp_path) -> None:
    out = tmp_path / "c"
    build_index(gpt2_model, planted_corpus[:20], out)
    shard = out / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError) as err:
        open_index(out)
    assert err.value.shard == shard.name


def test_llama_and_lora_indexes(llama_model, lora_model, small_corpus, tmp_path) -> None:
    for i, loaded in enumerate((llama_model, lora_model)):
        for spec in ("repsim", "gradsim"):
            s = parse_method_spec(spec)
            index = build_index(loaded, small_corpus, tmp_path / f"{i}-{spec}", s)
            res = index.query(small_corpus[:2], top_k=3)
            assert [r.query_id for r in res] == [e.id for e in small_corpus[:2]]
            # an example is its own best match under cosine similarity
            assert res[0].results[0].id == small_corpus[0].id
            assert res[0].results[0].score == pytest.approx(1.0, abs=SCORE_ATOL_FP16)
            assert [h.rank for h in res[0].results] == [1, 2, 3]
    assert open_index(tmp_path / "1-gradsim").manifest.model.adapter_dir is not None
