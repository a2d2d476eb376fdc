"""``driftscope replay`` on defaults: embeddings on, exported on first use, stdout stays JSON.

Runs the installed CLI in a subprocess so that output written by native code (the ONNX exporter
prints from C++ as well as Python) is caught on the real file descriptors.

The first use — a replay with the embedder cache pointed at an empty directory, the machine state
of a user who never exported the embedder — happens once per session, in the ``first_use``
fixture: it pays the export (about a minute on an idle machine, 2.6 minutes measured on two cores
under a load of 15), on a short stream. The replay with its planted drift then runs against the
cache that first use filled. No subprocess here has a timeout of its own: a replay of 1,600
events is dominated by calibrating the detectors of each of its streams, which took more than 15
minutes on two cores under a load of 18, so only pytest's timeout (:data:`TIMEOUT_S`, raised for
this module) stops a hang.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events

TIMEOUT_S = 3600  # per test: a hang, not a slow machine
pytestmark = pytest.mark.timeout(TIMEOUT_S)


@dataclass
class FirstUse:
    proc: subprocess.CompletedProcess
    cache: Path  # XDG_CACHE_HOME, now holding the exported embedder


def _write_stream(path: Path) -> None:
    # v1 answers normally; v2 refuses half of billing (a quarter of the traffic) from its first
    # event: the default streams (model-level and route=...) must catch it with no config
    v1 = generate_events(StreamSpec(n=800, seed=1))
    v2 = generate_events(StreamSpec(n=800, seed=2, model_version="v2", prefix="b",
                                    drifts=(Drift(start=0, route="billing", refusal_rate=0.5),)))
    path.write_text("".join(json.dumps(e) + "\n" for e in [*v1, *v2]))


def _replay(stream: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("DRIFTSCOPE_EMBEDDER__MODEL_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "driftscope_llm.services.cli.main", "replay", str(stream),
         "--json", *args], capture_output=True, text=True, env=env, check=False)


@pytest.fixture(scope="session")
def first_use(tmp_path_factory: pytest.TempPathFactory) -> FirstUse:
    root = tmp_path_factory.mktemp("first-use")
    stream = root / "stream.jsonl"  # one version, no drift: nothing to report on stdout
    stream.write_text("".join(json.dumps(e) + "\n"
                              for e in generate_events(StreamSpec(n=60, seed=3))))
    cache = root / "cache"
    cache.mkdir()
    return FirstUse(_replay(stream, cache), cache)


def test_first_use_exports_the_embedder_and_stdout_stays_clean(first_use: FirstUse) -> None:
    proc = first_use.proc
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == ""  # no anomaly to report, and none of the exporter's chatter
    assert (first_use.cache / "driftscope" / "embedder" / "driftscope-embedder.json").exists()
    assert "exporting the output embedder" in proc.stderr  # said so, on stderr


def test_replay_json_on_defaults_with_the_embedder(first_use: FirstUse, tmp_path: Path) -> None:
    stream = tmp_path / "stream.jsonl"
    _write_stream(stream)
    proc = _replay(stream, first_use.cache)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "exporting" not in proc.stderr  # exported once, on first use
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


def test_no_embed_leaves_the_embedder_alone(tmp_path: Path) -> None:
    stream = tmp_path / "stream.jsonl"
    _write_stream(stream)
    cache = tmp_path / "cache"
    cache.mkdir()
    proc = _replay(stream, cache, "--no-embed")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [json.loads(line) for line in proc.stdout.splitlines()]
    assert not (cache / "driftscope").exists()
