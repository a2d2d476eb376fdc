"""``driftscope trace`` and ``driftscope attribute ID`` on a tiny model, against real Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import redis
from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app
from driftscope_llm.services.store import IncidentState
from driftscope_llm.services.store.attribution_report import AttributedReport
from driftscope_llm.services.store.redis_store import RedisStore
from tests.collector_harness import consume_all
from tests.integration.test_worker import (  # the module's tiny model and indexes
    PLANTED,
    PLANTED_QUERY,
    TOP_K,
    Built,
    built,
    make_incident,
)

__all__ = ["built"]
runner = CliRunner()


def test_trace_ranks_the_planted_examples_first(built: Built) -> None:
    res = runner.invoke(app, [
        "trace", "--model", str(built.model_dir), "--index", str(built.repsim),
        "--index", f"gradsim={built.gradsim}", "--prompt", PLANTED_QUERY.prompt,
        "--output", PLANTED_QUERY.response, "--top-k", str(TOP_K), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    top = [row["id"] for row in report["aggregate"]]
    planted = {e.id for e in PLANTED}
    assert set(top[: len(planted)]) == planted
    assert set(report["methods"]) == {"repsim", "gradsim"} and report["agreement"]


def test_trace_refuses_a_directory_that_is_no_index(built: Built, tmp_path: Path) -> None:
    res = runner.invoke(app, ["trace", "--model", str(built.model_dir), "--index", str(tmp_path),
                              "--output", "x"])
    assert res.exit_code == 2
    assert "not an index directory" in res.output and "Traceback" not in res.output


def test_attribute_reruns_and_stores_the_report(built: Built, redis_url: str,
                                                redis_client: redis.Redis, kafka_bootstrap: str,
                                                new_topic: Callable[..., str],
                                                tmp_path: Path) -> None:
    store = RedisStore(redis_client)
    inc = make_incident("rerun")
    inc.transition(IncidentState.FAILED, inc.opened_at, "index was missing")
    store.save_incident(inc)
    cfg = tmp_path / "worker.yaml"
    attributions = new_topic()
    cfg.write_text(json.dumps({
        "redis": {"url": redis_url}, "kafka": {"bootstrap_servers": kafka_bootstrap},
        "topics": {"attributions": attributions},
        "models": {"bot": {"model_dir": str(built.model_dir),
                           "indexes": {"repsim": str(built.repsim)}, "top_k": TOP_K}}}))
    res = runner.invoke(app, ["attribute", "rerun", "--config", str(cfg),
                              "--index", f"gradsim={built.gradsim}", "--json"])
    assert res.exit_code == 0, res.output
    stored = store.get_incident("rerun")
    assert stored.state is IncidentState.ATTRIBUTED
    assert isinstance(stored.attribution, AttributedReport)
    assert set(stored.attribution.methods) == {"repsim", "gradsim"}
    # attributed now: done unless --force, which replaces the report and keeps the state
    forced = runner.invoke(app, ["attribute", "rerun", "--config", str(cfg), "--force"])
    assert forced.exit_code == 0, forced.output
    again = store.get_incident("rerun")
    assert isinstance(again.attribution, AttributedReport)
    assert set(again.attribution.methods) == {"repsim"}
    assert [h["state"] for h in again.state_history] == ["failed", "attributing", "attributed"]
    events = [json.loads(m.value) for m in consume_all(kafka_bootstrap, attributions)]
    assert [e["methods"] for e in events] == [["repsim", "gradsim"], ["repsim"]]
    missing = runner.invoke(app, ["attribute", "nope", "--config", str(cfg)])
    assert missing.exit_code == 4 and "not found" in missing.output
