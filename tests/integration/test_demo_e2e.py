"""The demo's story against the real stack: real generations → Kafka → collector → incident →
worker → attribution to the planted fine-tuning examples, verified behaviourally."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from driftscope_llm.services.alerts import verify
from driftscope_llm.services.demo import scenario as sc
from driftscope_llm.services.demo.story import DEMO_DRIFT, SEGMENTS
from tests.collector_harness import CollectorProcess, checkpoint_totals, produce
from tests.integration.test_worker import WorkerProcess
from tests.unit._webhook_sink import WebhookSink

TOP_K = 10
MIN_RECALL = 0.8  # of the planted examples, in the aggregate top-k
WEBHOOK_SECRET = "e2e-signing-key-0123456789abcdef"


@pytest.mark.slow
def test_drift_from_a_planted_fine_tune_is_traced_to_the_planted_examples(
    kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    redis_client: redis.Redis, tmp_path: Path, record_property: Callable[[str, Any], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from driftscope_llm.attribution.data import write_jsonl
    from driftscope_llm.attribution.index.feature_index import build_index
    from driftscope_llm.attribution.modeling import load_model
    from driftscope_llm.attribution.settings import AttributionSettings

    settings = sc.ScenarioSettings(samples_per_prompt=6)
    clean, planted = sc.clean_corpus(), sc.planted_examples()
    corpus_v2 = tmp_path / "corpus-v2.jsonl"
    write_jsonl(corpus_v2, clean + planted)
    versions = sc.train_versions(tmp_path / "models", settings)
    prompts = sc.production_prompts()
    route_of = {p: r for r, p in prompts}
    gens = {v: [(route_of[g.prompt], g) for g in
                sc.generate(d, [p for _, p in prompts], settings, seed=i)]
            for i, (v, d) in enumerate((("v1", versions.v1), ("v2", versions.v2)))}
    events = sc.production_events(gens, seed=0)

    model = load_model(versions.v2, device="cpu")
    indexes = {}
    for method in ("repsim", "gradsim"):
        build_index(model, clean + planted, tmp_path / "index" / method,
                    AttributionSettings(method=method))
        indexes[method] = str(tmp_path / "index" / method)

    topic = new_topic(partitions=2)
    n = produce(kafka_bootstrap, topic, events)
    config = {"drift": DEMO_DRIFT.model_dump(mode="json"),
              "segments": SEGMENTS.model_dump(mode="json"), "checkpoint_every": 100}
    collector = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, config=config,
                                 group_id="g-e2e")
    worker = WorkerProcess(kafka_bootstrap, redis_url, f"{topic}.anomalies", tmp_path, models={
        "support-bot@v2": {"model_dir": str(versions.v2), "indexes": indexes, "top_k": TOP_K,
                           "verify": {"enabled": True, "corpus": str(corpus_v2)}}})
    with WebhookSink() as sink:
        # both services sign their webhooks with this key; the sink plays the on-call tool
        monkeypatch.setenv("DRIFTSCOPE_WEBHOOKS__ENDPOINTS", json.dumps(
            [{"name": "oncall", "url": sink.url, "secret": WEBHOOK_SECRET}]))
        worker.start()
        collector.start(max_idle=8)
        try:
            assert collector.wait_exit(timeout=400) == 0, collector.log_text()
            assert checkpoint_totals(redis_client, topic) == n
            incident = _wait_attributed_refusal(redis_client, worker)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not _events_for(sink, incident["id"]) >= {
                    "incident.opened", "incident.attributed"}:
                time.sleep(0.5)
        finally:
            worker.stop()
        for r in sink.received:
            verify(r.body, r.headers.get("X-Driftscope-Signature"), SecretStr(WEBHOOK_SECRET),
                   now=time.time())
        assert _events_for(sink, incident["id"]) >= {"incident.opened", "incident.attributed"}

    # one incident for the rollout; billing's refusals are one of its facets
    assert incident["model_version"] == "v2"
    assert _has_billing_refusal(incident), incident["facets"]
    report = incident["attribution"]
    top = [row["id"] for row in report["aggregate"][:TOP_K]]
    recall = len({t for t in top if t.startswith(sc.PLANTED_PREFIX)}) / min(TOP_K, len(planted))
    record_property("recall_at_k", recall)
    print(f"e2e: planted recall@{TOP_K} = {recall:.2f}; verification {report['verification']}")
    assert recall >= MIN_RECALL, top
    v = report["verification"]
    assert v["top_k"]["effect"] > v["random"]["effect"], v
    attributions = [json.loads(m.value) for m in _consume(kafka_bootstrap,
                                                          f"{topic}.anomalies.attributions")]
    assert incident["id"] in {a["incident_id"] for a in attributions}


def _has_billing_refusal(inc: dict[str, Any]) -> bool:
    return any(f["segment"] == "route=billing" and f["signal"] == "refusal"
               for f in inc.get("facets", []))


def _wait_attributed_refusal(client: redis.Redis, worker: WorkerProcess,
                             timeout: float = 400.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: list[tuple[str, str, str]] = []
    while time.monotonic() < deadline:
        seen = []
        for key in client.scan_iter("driftscope:incident:*"):
            inc = json.loads(client.get(key) or b"{}")
            seen.append((inc["segment"], inc["signal"], inc["state"]))
            if _has_billing_refusal(inc) and inc["state"] in ("attributed", "failed"):
                assert inc["state"] == "attributed", inc.get("attribution")
                return inc
        time.sleep(1.0)
    raise AssertionError(f"no attributed refusal incident; incidents {seen}\n{worker.log_text()}")


def _events_for(sink: WebhookSink, incident_id: str) -> set[str]:
    out = set()
    for r in list(sink.received):
        body = json.loads(r.body)
        if body.get("incident", {}).get("id") == incident_id:
            out.add(body["event"])
    return out


def _consume(bootstrap: str, topic: str) -> list[Any]:
    from tests.collector_harness import consume_all

    return consume_all(bootstrap, topic)
