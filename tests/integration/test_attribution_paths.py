"""``driftscope attribute ID`` and ``driftscope worker`` finish an attribution the same way, on
the real broker and Redis, with the tiny model and indexes of ``test_worker``.

Two identical incidents: one announced on the anomalies topic and attributed by the worker
command, one attributed by ``driftscope attribute``. Each must gain the same state history,
publish exactly one AttributionEvent and send exactly one ``incident.attributed`` webhook (to a
local receiver), with the same content apart from ids and times; a second ``attribute`` finds
the work done and announces nothing.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import redis
from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app
from driftscope_llm.services.store import IncidentState
from driftscope_llm.services.store.attribution_report import AttributedReport
from driftscope_llm.services.store.redis_store import RedisStore
from tests.collector_harness import consume_all, produce
from tests.integration.test_worker import (  # the module's tiny model and indexes
    TOP_K,
    Built,
    anomaly,
    built,
    make_incident,
)
from tests.unit._webhook_sink import WebhookSink

__all__ = ["built"]
runner = CliRunner()
SECRET = "s3cret-s3cret-s3cret"


def _top(event: dict[str, Any]) -> list[tuple[str, int]]:
    return [(row["id"], row["rank"]) for row in event["top_examples"]]


def test_attribute_publishes_one_event_and_one_webhook_like_the_worker(
        built: Built, redis_url: str, redis_client: redis.Redis, kafka_bootstrap: str,
        new_topic: Any, tmp_path: Path) -> None:
    store = RedisStore(redis_client)
    tag = uuid.uuid4().hex[:8]
    by_worker, by_cli = make_incident(f"w-{tag}"), make_incident(f"c-{tag}")
    store.save_incident(by_worker)
    store.save_incident(by_cli)
    anomalies, attributions = new_topic(), new_topic()
    produce(kafka_bootstrap, anomalies, [anomaly(by_worker)])
    with WebhookSink() as hook:
        cfg = tmp_path / "worker.yaml"
        cfg.write_text(json.dumps({
            "redis": {"url": redis_url}, "kafka": {"bootstrap_servers": kafka_bootstrap},
            "topics": {"anomalies": anomalies, "attributions": attributions},
            "group_id": f"worker-{tag}", "metrics": {"port": 0},
            "models": {"bot": {"model_dir": str(built.model_dir), "top_k": TOP_K,
                               "indexes": {"repsim": str(built.repsim)}}},
            "webhooks": {"endpoints": [{"name": "ops", "url": hook.url, "secret": SECRET,
                                        "events": ["incident.attributed"]}]}}))
        worker = runner.invoke(app, ["worker", "--config", str(cfg), "--max-idle", "8"])
        assert worker.exit_code == 0, worker.output
        cli = runner.invoke(app, ["attribute", by_cli.id, "--config", str(cfg), "--json"])
        assert cli.exit_code == 0, cli.output
        again = runner.invoke(app, ["attribute", by_cli.id, "--config", str(cfg)])
        assert again.exit_code == 0, again.output
        received = list(hook.received)
    assert f"{by_cli.id} is already attributed; --force runs it again" in again.stderr

    w, c = store.get_incident(by_worker.id), store.get_incident(by_cli.id)
    assert [h["state"] for h in w.state_history] == ["attributing", "attributed"]
    assert [h["state"] for h in c.state_history] == ["attributing", "attributed"]
    assert w.state is c.state is IncidentState.ATTRIBUTED
    assert isinstance(w.attribution, AttributedReport)
    assert isinstance(c.attribution, AttributedReport)
    assert json.loads(cli.stdout.strip().splitlines()[-1]) == c.attribution.model_dump(
        mode="json")

    events = [json.loads(m.value) for m in consume_all(kafka_bootstrap, attributions)]
    assert sorted(e["incident_id"] for e in events) == sorted([by_worker.id, by_cli.id])
    ew, ec = (next(e for e in events if e["incident_id"] == i) for i in (w.id, c.id))
    assert (ew["status"], ew["methods"]) == (ec["status"], ec["methods"]) == (
        "attributed", ["repsim"])
    assert _top(ew) == _top(ec) and len(_top(ew)) == TOP_K
    assert store.is_published(w.id) and store.is_published(c.id)

    assert sorted(json.loads(r.body)["incident"]["id"] for r in received) == sorted(
        [w.id, c.id])
    assert [r.headers["X-Driftscope-Event"] for r in received] == ["incident.attributed"] * 2
    bodies = {json.loads(r.body)["incident"]["id"]: json.loads(r.body) for r in received}
    for body in bodies.values():
        assert body["incident"]["state"] == "attributed"
        assert [h["state"] for h in body["incident"]["state_history"]] == [
            "attributing", "attributed"]
    top = [[row["id"] for row in bodies[i]["incident"]["attribution"]["aggregate"]]
           for i in (w.id, c.id)]
    assert top[0] == top[1]
