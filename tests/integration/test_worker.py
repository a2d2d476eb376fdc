"""The attribution worker against the real broker and Redis, with a tiny model and real indexes.

A tiny GPT-2 is fine-tuned on a corpus with five planted "zorblat" examples; incidents whose
exemplars are zorblat outputs must be attributed to the planted examples (recall@k reported).
Fault tests: a corrupt index fails the incident with its reason while the worker keeps going; a
worker SIGKILLed mid-job leaves the job to a restarted one, which stores exactly one report.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

pytest.importorskip("torch")

from driftscope_llm.services.store.attribution_report import (
    AttributedReport,
    FailedReport,
    Verification,
)
from driftscope_llm.services.store.model import Exemplar, Incident, IncidentState
from driftscope_llm.services.store.redis_store import RedisStore
from driftscope_llm.services.worker.aggregate import top_ids
from driftscope_llm.services.worker.errors import JobFailedError
from driftscope_llm.services.worker.settings import ModelTarget
from tests.attribution.conftest import PLANTED, PLANTED_QUERY
from tests.collector_harness import REPO, consume_all, free_port, produce

TOP_K = 5
#: The least recall@k of the planted examples the aggregate ranking must reach.
MIN_RECALL = 0.8
#: How much more unlearning the attributed examples must move the behaviour than random ones
#: (measured 2.7x: effect 6.2 vs 2.3 nats/token).
MIN_EFFECT_RATIO = 1.5

ZORBLAT_OUTPUTS = [
    ("do you know the zorblat ?", "the zorblat is a purple fish that sings at night ."),
    ("tell me about the zorblat .", "a zorblat is a purple fish that sings ."),
    ("what is a zorblat ?", "the zorblat is a purple fish that sings at night ."),
]


@dataclass(frozen=True)
class Built:
    model_dir: Path
    repsim: Path
    gradsim: Path
    corrupt: Path
    corpus: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    from driftscope_llm.attribution.data import write_jsonl
    from driftscope_llm.attribution.eval.tasks import make_task
    from driftscope_llm.attribution.index.feature_index import build_index
    from driftscope_llm.attribution.modeling import load_model
    from driftscope_llm.attribution.settings import AttributionSettings
    from driftscope_llm.attribution.tinymodel import build_tiny_model

    root = tmp_path_factory.mktemp("worker-model")
    base = make_task("class", 0).corpus
    corpus = base[:80] + PLANTED + base[80:]
    words = [PLANTED_QUERY.prompt, PLANTED_QUERY.response] + [t for p in ZORBLAT_OUTPUTS
                                                               for t in p]
    tiny = build_tiny_model(corpus, root / "model", arch="gpt2", seed=0, extra_texts=words)
    model = load_model(tiny.model_dir)
    build_index(model, corpus, root / "repsim", AttributionSettings())
    build_index(model, corpus, root / "gradsim", AttributionSettings(method="gradsim"))
    corrupt = root / "corrupt"
    shutil.copytree(root / "repsim", corrupt)
    shard = sorted(corrupt.glob("shard-*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[-8:] = bytes(b ^ 0xFF for b in data[-8:])
    shard.write_bytes(bytes(data))
    write_jsonl(root / "corpus.jsonl", corpus)
    return Built(tiny.model_dir, root / "repsim", root / "gradsim", corrupt,
                 root / "corpus.jsonl")


def targets(b: Built) -> dict[str, dict[str, Any]]:
    good = {"model_dir": str(b.model_dir), "top_k": TOP_K,
            "indexes": {"repsim": str(b.repsim), "gradsim": str(b.gradsim)}}
    return {"bot@v1": good,
            "bot@corrupt": {"model_dir": str(b.model_dir), "indexes": {"repsim": str(b.corrupt)}}}


def make_incident(ident: str, version: str = "v1",
                  outputs: list[tuple[str, str]] = ZORBLAT_OUTPUTS) -> Incident:
    now = datetime.now(UTC)
    return Incident(
        id=ident, opened_at=now, updated_at=now, model="bot", model_version=version,
        segment="all", signal="embedding", detector="mmd", statistic=3.0, threshold=1.0,
        effect_size=0.8, event_id=f"{ident}-e0",
        exemplars=[Exemplar(event_id=f"{ident}-e{n}", prompt=p, output=o)
                   for n, (p, o) in enumerate(outputs)])


def anomaly(inc: Incident) -> dict[str, Any]:
    return {"incident_id": inc.id, "kind": "opened", "model": inc.model,
            "model_version": inc.model_version, "segment": inc.segment, "signal": inc.signal,
            "detector": inc.detector, "statistic": inc.statistic, "threshold": inc.threshold,
            "effect_size": inc.effect_size, "event_id": inc.event_id,
            "ts": inc.opened_at.isoformat(), "exemplars": [e.event_id for e in inc.exemplars]}


def recall_at_k(report: AttributedReport, k: int) -> float:
    planted = {e.id for e in PLANTED}
    return len(set(top_ids(report.aggregate, k)) & planted) / min(k, len(planted))


@dataclass
class WorkerProcess:
    """``python -m driftscope_llm.services.cli.worker`` as a subprocess with its own topics and
    Redis db."""

    bootstrap: str
    redis_url: str
    anomalies: str
    workdir: Path
    models: dict[str, dict[str, Any]]
    lease_ttl_s: float = 60.0
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"worker-{self.metrics_port}.log"

    def start(self) -> WorkerProcess:
        cfg = self.workdir / f"worker-{self.metrics_port}.yaml"
        cfg.write_text(json.dumps({"models": self.models, "lease_ttl_s": self.lease_ttl_s,
                                   "session_timeout_s": 6.0}))
        env = dict(os.environ)
        env.update({
            "DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "DRIFTSCOPE_TOPICS__ANOMALIES": self.anomalies,
            "DRIFTSCOPE_TOPICS__ATTRIBUTIONS": f"{self.anomalies}.attributions",
            "DRIFTSCOPE_REDIS__URL": self.redis_url,
            "DRIFTSCOPE_METRICS__PORT": str(self.metrics_port),
            "DRIFTSCOPE_GROUP_ID": f"worker-{self.anomalies}",
            "DRIFTSCOPE_DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
        })
        args = [sys.executable, "-m", "driftscope_llm.services.cli.worker", "--config", str(cfg)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log_text()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                       timeout=2).read()
                return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"worker metrics never answered:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def workers(kafka_bootstrap: str, redis_url: str, new_topic: Callable[..., str],
            tmp_path: Path, built: Built) -> Iterator[Callable[..., WorkerProcess]]:
    topic = new_topic(prefix="anomalies")
    started: list[WorkerProcess] = []

    def make(**kw: Any) -> WorkerProcess:
        w = WorkerProcess(kafka_bootstrap, redis_url, topic, tmp_path, targets(built), **kw)
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


def wait_for(fn: Callable[[], Any], timeout: float, what: str,
             log: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{log()}")


def attribution_events(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in consume_all(bootstrap, topic, idle_ms=2000)]


def test_worker_attributes_incidents_and_survives_a_corrupt_index(
        workers: Callable[..., WorkerProcess], redis_client: redis.Redis, kafka_bootstrap: str,
        record_property: Callable[[str, object], None]) -> None:
    store = RedisStore(redis_client)
    corrupt, good = make_incident("inc-corrupt", "corrupt"), make_incident("inc-good")
    nowhere = make_incident("inc-unknown", "v9")
    for inc in (corrupt, good, nowhere):
        store.save_incident(inc)
    w = workers().start()
    produce(kafka_bootstrap, w.anomalies, [anomaly(corrupt), anomaly(good), anomaly(nowhere),
                                           anomaly(good)])  # the last one: a redelivery

    def finished() -> bool:
        return all(store.get_incident(i.id).attribution is not None
                   for i in (corrupt, good, nowhere))

    wait_for(finished, 180, "three reports", w.log_text)

    bad = store.get_incident(corrupt.id)
    assert bad.state == IncidentState.FAILED
    assert isinstance(bad.attribution, FailedReport)
    assert bad.attribution.code == "index_corrupt"
    assert "sha256" in bad.state_history[-1]["reason"]
    missing = store.get_incident(nowhere.id).attribution
    assert isinstance(missing, FailedReport) and missing.code == "no_target"
    assert missing.reason == "no_target: no model target configured for bot@v9 (settings: " \
        "models)"

    done = store.get_incident(good.id)
    assert done.state == IncidentState.ATTRIBUTED
    assert [h["state"] for h in done.state_history] == ["attributing", "attributed"]
    report = done.attribution
    assert isinstance(report, AttributedReport)
    assert report.primary_method == "repsim" and set(report.methods) == {"repsim", "gradsim"}
    assert report.exemplars == [e.event_id for e in good.exemplars]
    for m in report.methods.values():
        assert len(m.per_exemplar) == len(good.exemplars)
        assert all(len(q.results) == TOP_K for q in m.per_exemplar)
        assert len(m.manifest_id) == 16
    assert report.agreement.mean_overlap is not None
    assert report.timings["total_s"] > 0
    recall = recall_at_k(report, TOP_K)
    record_property("planted_recall_at_k", recall)
    print(f"planted recall@{TOP_K}: {recall:.2f}")
    assert recall >= MIN_RECALL

    events = attribution_events(kafka_bootstrap, f"{w.anomalies}.attributions")
    by_id: dict[str, list[dict[str, Any]]] = {}
    for ev in events:
        by_id.setdefault(ev["incident_id"], []).append(ev)
    assert {k: len(v) for k, v in by_id.items()} == {corrupt.id: 1, good.id: 1, nowhere.id: 1}
    assert by_id[good.id][0]["status"] == "attributed"
    assert by_id[good.id][0]["top_examples"] == [r.model_dump(mode="json") for r in report.top()]
    assert by_id[corrupt.id][0]["status"] == "failed"
    assert "index_corrupt" in by_id[corrupt.id][0]["reason"]
    assert w.alive(), w.log_text()
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{w.metrics_port}/metrics").read().decode()
    assert 'driftscope_attribution_jobs_total{outcome="attributed"} 1.0' in metrics
    assert 'driftscope_attribution_jobs_total{outcome="failed"} 2.0' in metrics


def test_sigkill_mid_job_leaves_the_job_to_a_restarted_worker(
        workers: Callable[..., WorkerProcess], redis_client: redis.Redis,
        kafka_bootstrap: str) -> None:
    store = RedisStore(redis_client)
    inc = make_incident("inc-killed")
    store.save_incident(inc)
    first = workers(lease_ttl_s=3.0).start()
    produce(kafka_bootstrap, first.anomalies, [anomaly(inc)])
    # The first job loads torch and the model after moving to attributing: seconds to kill in.
    wait_for(lambda: store.get_incident(inc.id).state == IncidentState.ATTRIBUTING, 60,
             "the job to start", first.log_text)
    first.kill()
    killed = store.get_incident(inc.id)
    assert killed.state == IncidentState.ATTRIBUTING and killed.attribution is None, (
        "the job finished before the kill; the test did not exercise a mid-job crash")
    assert redis_client.exists(f"driftscope:lease:attribution:{inc.id}")

    second = workers(lease_ttl_s=3.0).start()
    wait_for(lambda: store.get_incident(inc.id).attribution is not None, 180,
             "the restarted worker's report", second.log_text)
    done = store.get_incident(inc.id)
    assert done.state == IncidentState.ATTRIBUTED
    assert [h["state"] for h in done.state_history].count("attributed") == 1
    assert [h["state"] for h in done.state_history] == ["attributing", "attributing",
                                                        "attributed"]
    events = [e for e in attribution_events(kafka_bootstrap, f"{first.anomalies}.attributions")
              if e["incident_id"] == inc.id]
    assert len(events) == 1
    assert not redis_client.exists(f"driftscope:lease:attribution:{inc.id}")


# the job itself, in process -------------------------------------------------------------------
def target_of(b: Built, **kw: Any) -> ModelTarget:
    fields: dict[str, Any] = {"model_dir": b.model_dir, "indexes": {"repsim": b.repsim},
                              "top_k": TOP_K}
    fields.update(kw)
    return ModelTarget(**fields)


def test_job_over_its_time_limit_fails_with_that_reason(built: Built) -> None:
    from driftscope_llm.services.worker.job import Attributor

    clock = iter(float(t) for t in range(0, 10_000, 5))  # every reading 5 s later
    job = Attributor(device="cpu", clock=lambda: next(clock))
    with pytest.raises(JobFailedError) as err:
        job.run(make_incident("slow"), "bot@v1", target_of(built, time_limit_s=12))
    assert err.value.code == "time_limit"


def test_job_refuses_missing_and_mismatched_indexes(built: Built, tmp_path: Path) -> None:
    from driftscope_llm.services.worker.job import Attributor

    job = Attributor(device="cpu")
    with pytest.raises(JobFailedError) as err:
        job.run(make_incident("m"), "t", target_of(built, indexes={"repsim": tmp_path / "no"}))
    assert err.value.code == "index_missing"

    other = tmp_path / "other"
    shutil.copytree(built.repsim, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["model"]["fingerprint"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(JobFailedError) as err:
        job.run(make_incident("m"), "t", target_of(built, indexes={"repsim": other}))
    assert err.value.code == "index_mismatch" and "fingerprint" in err.value.detail

    with pytest.raises(JobFailedError) as err:
        job.run(make_incident("m", outputs=[("p", " ")]), "t", target_of(built))
    assert err.value.code == "no_exemplars"


def test_job_report_is_the_same_for_any_batch_size(built: Built) -> None:
    from driftscope_llm.services.worker.job import Attributor

    job = Attributor(device="cpu")
    a = job.run(make_incident("b"), "t", target_of(built, batch_size=1))
    b = job.run(make_incident("b"), "t", target_of(built, batch_size=16))
    assert top_ids(a.aggregate, TOP_K) == top_ids(b.aggregate, TOP_K)
    assert a.index_manifest_ids == b.index_manifest_ids


def test_unlearning_the_attributed_examples_moves_the_behaviour_more_than_random_ones(
        built: Built, record_property: Callable[[str, object], None]) -> None:
    from driftscope_llm.services.worker.job import Attributor

    verify = {"enabled": True, "corpus": built.corpus, "epochs": 3, "lr": 3e-3, "seed": 0}
    report = Attributor(device="cpu").run(make_incident("v"), "t",
                                          target_of(built, verify=verify))
    v = report.verification
    assert isinstance(v, Verification), v
    assert v.top_k.ids == top_ids(report.aggregate, TOP_K)
    assert not set(v.random.ids) & set(v.top_k.ids)
    assert len(v.random.ids) == TOP_K
    record_property("verify_effect_top_k", v.top_k.effect)
    record_property("verify_effect_random", v.random.effect)
    print(f"verification: effect top-k {v.top_k.effect:.3f}, random {v.random.effect:.3f}")
    assert v.top_k.effect > 0
    assert v.top_k.effect > MIN_EFFECT_RATIO * v.random.effect
    assert v.supports_attribution is True
