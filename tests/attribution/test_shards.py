"""Sharded builds: a deterministic split, resumable parts, and a merge equal to one build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from driftscope_llm.attribution.errors import IndexError_, IndexMismatchError, SettingsError
from driftscope_llm.attribution.index.feature_index import build_index, open_index
from driftscope_llm.attribution.index.manifest import part_manifest_name
from driftscope_llm.attribution.index.parts import build_part, merge_parts, parse_part
from driftscope_llm.attribution.settings import AttributionSettings
from driftscope_llm.services.cli.main import app

from .conftest import SCORE_ATOL_FP16

SHARD = 7  # 40 examples -> 6 chunks: parts of 3 get chunks {0,3}, {1,4}, {2,5}


def _scores(index, queries) -> dict[tuple[str, str], float]:
    res = index.query(queries, top_k=index.count)
    return {(r.query_id, h.id): h.score for r in res for h in r.results}


@pytest.mark.parametrize("spec", ["repsim", "gradsim"])
def test_merged_parts_equal_a_single_process_build(gpt2_model, planted_corpus, tmp_path,
                                                   spec) -> None:
    corpus, queries = planted_corpus[:40], planted_corpus[40:44]
    s = AttributionSettings(method=spec, proj_dim=8)
    single = build_index(gpt2_model, corpus, tmp_path / "single", s, batch_size=16,
                         shard_size=SHARD)
    shared = tmp_path / "shared"
    # each builder its own batch size: only the batch composition differs from the single run
    results = [build_part(gpt2_model, corpus, shared, s, part=(i, 3), batch_size=2 + i,
                          shard_size=SHARD) for i in (2, 0, 1)]
    assert [r.merged for r in results] == [False, False, True]  # the last to finish merges
    assert [r.rows for r in results] == [12, 14, 14]
    merged = open_index(shared, model=gpt2_model, corpus=corpus)
    assert merged.ids == single.ids == [e.id for e in corpus]
    assert [e.file for e in merged.manifest.shards] == [e.file for e in single.manifest.shards]
    a, b = _scores(single, queries), _scores(merged, queries)
    assert a.keys() == b.keys()
    keys = sorted(a)
    torch.testing.assert_close(torch.tensor([b[k] for k in keys]),
                               torch.tensor([a[k] for k in keys]), rtol=0, atol=SCORE_ATOL_FP16)
    # the worker path: the trace CLI attributes against the merged index
    out = CliRunner().invoke(app, ["trace", "--model", str(Path(gpt2_model.model_dir)),
                                   "--index", f"{spec}={shared}", "--prompt", queries[0].prompt,
                                   "--output", queries[0].response, "--top-k", "3", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout.strip().splitlines()[-1])
    [best] = merged.query(queries[:1], top_k=1)
    assert report["aggregate"][0]["id"] == best.results[0].id


def test_parts_in_separate_directories_merge_into_one(gpt2_model, planted_corpus,
                                                      tmp_path) -> None:
    corpus = planted_corpus[:30]
    for i in range(2):
        build_part(gpt2_model, corpus, tmp_path / f"p{i}", part=(i, 2), shard_size=SHARD)
    with pytest.raises(IndexError_, match="holds 1 part manifest"):
        open_index(tmp_path / "p0")
    with pytest.raises(IndexError_, match="parts 1/2 are missing"):
        merge_parts([tmp_path / "p0"], tmp_path / "m")
    merge_parts([tmp_path / "p0", tmp_path / "p1"], tmp_path / "m")
    single = build_index(gpt2_model, corpus, tmp_path / "single", shard_size=SHARD)
    merged = open_index(tmp_path / "m", model=gpt2_model)
    assert merged.ids == single.ids
    for (_, a, _), (_, b, _) in zip(merged._shards[0].blocks(100), single._shards[0].blocks(100),
                                    strict=True):
        assert torch.equal(a, b)  # same batches -> the same bytes


def test_a_rerun_skips_finished_shards(gpt2_model, planted_corpus, tmp_path) -> None:
    corpus = planted_corpus[:40]
    build_part(gpt2_model, corpus, tmp_path, part=(1, 3), shard_size=SHARD)
    manifest = json.loads((tmp_path / part_manifest_name(1, 3)).read_text())
    assert [e["start"] for e in manifest["shards"]] == [7, 28]
    (tmp_path / manifest["shards"][1]["file"]).unlink()  # lose one shard
    seen: list[tuple[int, int]] = []
    build_part(gpt2_model, corpus, tmp_path, part=(1, 3), shard_size=SHARD,
               progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (7, 14)  # the surviving shard was kept, only the lost one rebuilt
    assert seen[-1] == (14, 14)


def test_parts_of_different_builds_are_refused(gpt2_model, planted_corpus, tmp_path) -> None:
    corpus = planted_corpus[:30]
    build_part(gpt2_model, corpus, tmp_path, part=(0, 2), shard_size=SHARD)
    with pytest.raises(IndexMismatchError) as err:  # the merge after part 1 refuses
        build_part(gpt2_model, corpus, tmp_path, AttributionSettings(method="gradsim"),
                   part=(1, 2), shard_size=SHARD)
    assert err.value.field == "features"


def test_parse_part() -> None:
    assert parse_part("0/4") == (0, 4) and parse_part(" 3 / 4 ") == (3, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(SettingsError, match="i/N"):
            parse_part(bad)


def _flat(text: str) -> str:
    """``text`` without any whitespace: rich wraps a long path anywhere, even inside a name."""
    return "".join(text.split())


def test_cli_build_shards_and_merge(tiny_gpt2, planted_corpus, tmp_path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": e.id, "prompt": e.prompt,
                                          "response": e.response}) + "\n"
                              for e in planted_corpus[:20]))
    runner = CliRunner()
    common = ["attribution", "index", "build", "--model", str(tiny_gpt2), "--corpus",
              str(corpus), "--shard-size", "5", "--json"]
    for i in range(2):
        res = runner.invoke(app, [*common, "--out", str(tmp_path / f"p{i}"), "--shard", f"{i}/2"])
        assert res.exit_code == 0, res.output
        row = json.loads(res.stdout)
        assert row["part"] == f"{i}/2" and row["examples"] == 10 and row["merged"] is False
    res = runner.invoke(app, ["attribution", "index", "merge", str(tmp_path / "p0"),
                              str(tmp_path / "p1"), "--out", str(tmp_path / "m"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"index": str(tmp_path / "m"), "examples": 20, "shards": 4,
                                      "parts": 2}
    res = runner.invoke(app, ["attribution", "index", "merge", str(tmp_path / "p0"),
                              str(tmp_path / "p1"), "--out", str(tmp_path / "m2")],
                        env={"COLUMNS": "40"})
    assert res.exit_code == 0, res.output
    assert _flat(res.stdout).startswith(_flat("merged 2 parts (20 examples, 4 shards) into "
                                              f"{tmp_path / 'm2'}"))
    bad = runner.invoke(app, ["attribution", "index", "merge", str(tmp_path / "p0")])
    assert bad.exit_code == 2 and "parts 1/2 are missing" in bad.stderr
    # human output of a part build: what was built, and whether it merged
    for columns in ("80", "40"):  # a path and a build time long enough to wrap either way
        one = tmp_path / f"[b]one-{columns}"  # markup in a path is printed literally
        res = runner.invoke(app, [*common[:-1], "--out", str(one), "--shard", "0/1"],
                            env={"COLUMNS": columns})
        assert res.exit_code == 0, res.output
        assert _flat(res.stdout).startswith(_flat(
            f"indexed part 0/1: 20 examples in 4 shards with repsim:mean_response into {one} in "))
        assert _flat(res.stdout).endswith(_flat("all parts done, merged"))
    # user errors: exit 2 with one line, no traceback
    bad = runner.invoke(app, [*common, "--out", str(tmp_path / "x"), "--shard", "2/2"])
    assert bad.exit_code == 2 and "--shard must be i/N" in bad.stderr
    assert "Traceback" not in bad.output
    bad = runner.invoke(app, ["attribution", "index", "merge", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "holds no part manifests" in bad.stderr


def test_the_indexed_job_runs_n_builders_whose_parts_merge(tiny_gpt2, planted_corpus,
                                                           tmp_path) -> None:
    """deploy/k8s/index-build-job.yaml's builder command, run here for every completion index
    (shared-storage paths mapped to a temporary directory), yields one merged index."""
    import yaml

    job_file = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "index-build-job.yaml"
    [job] = [d for d in yaml.safe_load_all(job_file.read_text()) if d["kind"] == "Job"]
    spec = job["spec"]
    n = spec["completions"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == n
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e for e in container["env"]}
    assert "job-completion-index" in env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"][
        "fieldPath"]
    args = container["args"]
    assert args[args.index("--shard") + 1] == f"$(JOB_COMPLETION_INDEX)/{n}"
    shared = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["shared"]
    assert args[args.index("--out") + 1].startswith(shared + "/")
    claim = next(v for v in pod["volumes"] if v["name"] == "shared")
    [pvc] = [d for d in yaml.safe_load_all(job_file.read_text())
             if d["kind"] == "PersistentVolumeClaim"
             and d["metadata"]["name"] == claim["persistentVolumeClaim"]["claimName"]]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    corpus_at = tmp_path / args[args.index("--corpus") + 1].removeprefix(shared + "/")
    corpus_at.parent.mkdir(parents=True)
    corpus_at.write_text("".join(json.dumps({"id": e.id, "prompt": e.prompt,
                                             "response": e.response}) + "\n"
                                 for e in planted_corpus[:24]))
    model_at = tmp_path / args[args.index("--model") + 1].removeprefix(shared + "/")
    model_at.parent.mkdir(parents=True)
    model_at.symlink_to(tiny_gpt2)
    runner = CliRunner()
    for i in range(n):
        local = [a.replace(shared, str(tmp_path)).replace("$(JOB_COMPLETION_INDEX)", str(i))
                 for a in args]
        local[local.index("--shard-size") + 1] = "5"  # 24 examples: every builder gets chunks
        res = runner.invoke(app, local)
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["merged"] is (i == n - 1)
    out = Path(args[args.index("--out") + 1].replace(shared, str(tmp_path)))
    index = open_index(out)
    assert index.ids == [e.id for e in planted_corpus[:24]]
    assert index.manifest.merged_from == n


def test_one_part_is_an_ordinary_build(gpt2_model, planted_corpus, tmp_path) -> None:
    corpus = planted_corpus[:12]
    res = build_part(gpt2_model, corpus, tmp_path, part=(0, 1), shard_size=SHARD)
    assert res.merged and res.rows == 12 and res.shards == 2
    assert sorted(p.name for p in tmp_path.glob("manifest*.json")) == ["manifest.json"]
    assert open_index(tmp_path, model=gpt2_model, corpus=corpus).ids == [e.id for e in corpus]
