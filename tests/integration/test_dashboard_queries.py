"""Every query of the provisioned Grafana dashboards, run against the real Prometheus after it
scraped a real collector fed a drifting stream: each is valid PromQL and returns data.

No Grafana server runs here; the queries are what breaks. Grafana's variables are substituted the
way Grafana does (``$model`` → the stream's model, "All" → ``.*``, a repeated panel once per
value of its variable, ``$__rate_interval`` and ``$__range`` → durations).
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.grafana_dashboards import (
    load_dashboards,
    panels,
    queries,
    substitute,
    variable_query_as_promql,
)
from tests.integration.test_worker import WorkerProcess
from tests.observability import CollectorProcess, drifting_stream, produce, to_bytes
from tests.stack import Prometheus, StackInfo, http_json

# The attribution dashboard reads the worker's metrics: a real worker, with no model target
# configured, consumes the collector's anomalies and fails each job (no_target) — so its job
# counters, durations and failure panels all have data.
RATE_INTERVAL = "1m"
RANGE = "10m"
INVALID_MESSAGES = [b"not json", b"[1, 2]", b'{"event_id": "x"}']
BATCH = 150
SCRAPES_BETWEEN_BATCHES_S = 2.5  # Prometheus scrapes every second


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


def _query(prometheus: Prometheus, expr: str) -> dict[str, Any]:
    qs = urllib.parse.urlencode({"query": expr})
    answer: dict[str, Any] = http_json(f"{prometheus.url}/api/v1/query?{qs}")
    return answer


def _variable_values(prometheus: Prometheus, expr: str, values: dict[str, str]) -> set[str]:
    parsed = variable_query_as_promql(substitute(expr, values))
    assert parsed is not None, expr
    selector, label = parsed
    return {r["metric"][label] for r in prometheus.query(f"count by ({label}) ({selector})")}


def test_every_dashboard_query_returns_data_from_a_scraped_collector(
    stack: StackInfo, kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    prometheus: Prometheus, tmp_path: Path,
) -> None:
    model = f"dash-{uuid.uuid4().hex[:8]}"
    topic = new_topic(partitions=1, prefix="dash")
    collector = CollectorProcess(tmp_path, bootstrap=kafka_bootstrap, topic=topic,
                                 redis_url=redis_url)
    worker = WorkerProcess(kafka_bootstrap, redis_url, f"{topic}.anomalies", tmp_path, models={})
    try:
        worker.start()
        prometheus.register_target(f"127.0.0.1:{worker.metrics_port}", {"job": "driftscope-worker"})
        prometheus.register_target(collector.address, {"job": "driftscope-collector"})
        prometheus.wait_for(f'driftscope_collector_up{{instance="{collector.address}"}} == 1')
        # as live traffic arrives: in batches a few scrapes apart (rate() needs a counter to
        # grow between two scrapes), invalid messages among them
        events = list(drifting_stream(model, 300, 300, routes=("billing", "tech")))
        for start in range(0, len(events), BATCH):
            produce(kafka_bootstrap, topic, to_bytes(iter(events[start:start + BATCH])),
                    key=model.encode())
            produce(kafka_bootstrap, topic, INVALID_MESSAGES, key=model.encode())
            time.sleep(SCRAPES_BETWEEN_BATCHES_S)
        processed = f'sum(driftscope_events_processed_total{{model="{model}"}})'
        prometheus.wait_for(processed, timeout=120,
                            until=lambda r: bool(r) and float(r[0]["value"][1]) >= len(events))
        prometheus.wait_for(f'driftscope_detector_alarm{{model="{model}"}} == 1', timeout=60)
        prometheus.wait_for('sum(driftscope_checkpoints_total{outcome="ok"})', timeout=30)
        prometheus.wait_for("driftscope_consumer_lag_messages", timeout=30)
        prometheus.wait_for(f'driftscope_incidents_open{{model="{model}"}} > 0', timeout=60)
        prometheus.wait_for(
            'sum(rate(driftscope_attribution_jobs_total{outcome="failed"}[1m])) > 0', timeout=90)
        failures = _run_all(prometheus, model)
    finally:
        collector.stop()
        worker.stop()
    assert not failures, "dashboard queries without data:\n" + "\n".join(failures)


def _run_all(prometheus: Prometheus, model: str) -> list[str]:
    values = {"model": model, "datasource": "driftscope-prometheus"}
    failures: list[str] = []
    checked = 0
    for name, dashboard in load_dashboards().items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        options: dict[str, set[str]] = {}
        for q in queries(name, dashboard):
            if q.kind != "variable":
                continue
            var = q.where.split()[-1]
            found = _variable_values(prometheus, q.expr, values)
            options[var] = found
            checked += 1
            if not found:
                failures.append(f"{name} {q.where}: no values")
        assert options.get("model", {model}) >= {model}
        repeats = {p["title"]: p.get("repeat") for p in panels(dashboard)}
        for q in queries(name, dashboard):
            if q.kind == "variable":
                continue
            title = q.where.split("'")[1] if q.kind == "panel" else ""
            repeat = repeats.get(title)
            runs = [{}] if not repeat else [{repeat: v} for v in sorted(options[repeat])]
            for extra in runs:
                expr = substitute(q.expr, {**values, **extra}, rate_interval=RATE_INTERVAL,
                                  range_=RANGE)
                answer = _query(prometheus, expr)
                checked += 1
                label = f"{name} {q.where}{' ' + json.dumps(extra) if extra else ''}"
                if answer.get("status") != "success":
                    failures.append(f"{label}: {answer.get('error')} ({expr})")
                elif not _finite(answer["data"]["result"]):
                    failures.append(f"{label}: no data ({expr})")
        assert variables  # every dashboard declares its variables
    assert checked > 40
    return failures
