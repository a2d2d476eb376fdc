"""``driftscope replay`` on defaults: embeddings on, exported on first use, stdout stays JSON.

Runs the installed CLI in a subprocess so that output written by native code (the ONNX exporter
prints from C++ as well as Python) is caught on the real file descriptors, with the embedder cache
pointed at an empty directory: the machine state of a user who never exported the embedder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events


def _write_stream(path: Path) -> None:
    # v1 answers normally; v2 refuses half of billing (a quarter of the traffic) from its first
    # event: the default streams (model-level and route=...) must catch it with no config
    v1 = generate_events(StreamSpec(n=800, seed=1))
    v2 = generate_events(StreamSpec(n=800, seed=2, model_version="v2", prefix="b",
                                    drifts=(Drift(start=0, route="billing", refusal_rate=0.5),)))
    path.write_text("".join(json.dumps(e) + "\n" for e in [*v1, *v2]))


def test_replay_json_on_a_machine_that_never_exported_the_embedder(tmp_path: Path) -> None:
    stream = tmp_path / "stream.jsonl"
    _write_stream(stream)
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("DRIFTSCOPE_EMBEDDER__MODEL_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "driftscope_llm.services.cli.main", "replay", str(stream),
         "--json"], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines, "the planted refusal drift raised nothing"
    records = [json.loads(line) for line in lines]  # every stdout line is one JSON object
    ids = {json.loads(line)["event_id"] for line in stream.read_text().splitlines()}
    for r in records:  # DESIGN's replay contract, with values from the file
        assert r["event_id"] in ids and r["event_id"].startswith("b"), r  # a v2 event
        assert r["model"] == "support-bot" and r["model_version"] == "v2", r
        assert isinstance(r["statistic"], float) and isinstance(r["threshold"], float), r
        assert r["ts"] and r["detector"] and r["exemplars"], r
        assert set(r["exemplars"]) <= ids, r
    # only billing changed: every record is on billing's stream or the model-level one
    assert {r["segment"] for r in records} <= {"route=billing", "all"}, records
    assert ("refusal", "route=billing") in {(r["signal"], r["segment"]) for r in records}
    # the embedder was exported on first use, and said so on stderr
    assert (cache / "driftscope" / "embedder" / "driftscope-embedder.json").exists()
    assert "exporting the output embedder" in proc.stderr


def test_no_embed_leaves_the_embedder_alone(tmp_path: Path) -> None:
    stream = tmp_path / "stream.jsonl"
    _write_stream(stream)
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "driftscope_llm.services.cli.main", "replay", str(stream),
         "--json", "--no-embed"], capture_output=True, text=True, env=env, timeout=600,
        check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [json.loads(line) for line in proc.stdout.splitlines()]
    assert not (cache / "driftscope").exists()
