"""End to end: a real collector's drift alarm, evaluated by the real Prometheus with the shipped
rules, routed by the real Alertmanager with the shipped config, received by driftscope's alert
receiver (the deployable, as a process) and relayed, signed, to a webhook."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from driftscope_llm.services.alerts import verify
from tests.observability import (
    CollectorProcess,
    drifting_stream,
    free_port,
    produce,
    shipped_alertmanager_config,
    shipped_rules,
    to_bytes,
    wait_rules_loaded,
)
from tests.stack import ALERTS_MODULE, Prometheus, StackInfo
from tests.unit._webhook_sink import WebhookSink

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def receiver_process(tmp_path: Path, *, token: str, endpoints: list[dict[str, Any]],
                     redis_url: str) -> Iterator[str]:
    """``python -m driftscope_llm.services.alerts receive`` on a free port; yields its webhook
    URL."""
    port = free_port()
    env = {
        **os.environ,
        "DRIFTSCOPE_RECEIVER__PORT": str(port),
        "DRIFTSCOPE_RECEIVER__BEARER_TOKEN": token,
        "DRIFTSCOPE_WEBHOOKS__ENDPOINTS": json.dumps(endpoints),
        "DRIFTSCOPE_REDIS__URL": redis_url,
        "DRIFTSCOPE_METRICS__PORT": str(free_port()),
    }
    log = tmp_path / "receiver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", ALERTS_MODULE, "receive"], env=env,
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"receiver did not start:\n{log.read_text()}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/alertmanager"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()


def _wait(cond: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(what())
        time.sleep(0.5)


def test_drift_alarm_reaches_the_webhook_through_prometheus_and_alertmanager(
    stack: StackInfo, kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    prometheus: Prometheus, tmp_path: Path,
) -> None:
    model = f"alerts-e2e-{uuid.uuid4().hex[:8]}"
    topic = new_topic(partitions=2, prefix="alerts")
    token = secrets.token_hex(24)
    token_file = tmp_path / "receiver-token"
    token_file.write_text(token)
    hmac_key = secrets.token_hex(24)

    def ours(payload: dict[str, Any]) -> bool:
        return any(a["labels"].get("model") == model for a in payload.get("alerts", []))

    with WebhookSink([200]) as sink, receiver_process(
        tmp_path, token=token, redis_url=redis_url,
        endpoints=[{"name": "e2e", "url": sink.url, "secret": hmac_key}],
    ) as receiver_url, shipped_rules(stack, prometheus), shipped_alertmanager_config(
        stack, receiver_url=receiver_url, token_file=token_file,
    ):  # fmt: skip
        wait_rules_loaded(stack.prometheus_url, {"DriftscopeDriftAlarm"})
        collector = CollectorProcess(tmp_path, bootstrap=kafka_bootstrap, topic=topic,
                                     redis_url=redis_url)
        try:
            prometheus.register_target(collector.address, {"job": "driftscope-collector"})
            produce(kafka_bootstrap, topic, to_bytes(drifting_stream(model, 300, 300)),
                    key=model.encode())
            # every event is billing's: the billing stream or the model-level stream ("all",
            # which runs beside the segment streams by default) fires, whichever first
            firing = prometheus.wait_for(
                f'ALERTS{{alertname="DriftscopeDriftAlarm",model="{model}",alertstate="firing"}}',
                timeout=120,
            )
            _wait(lambda: any(ours(json.loads(r.body)) for r in sink.received), 60,
                  lambda: f"no relayed alert for {model}; webhook got {len(sink.received)} "
                          f"request(s); collector log:\n{collector.log_tail()}")
        finally:
            collector.stop()

    labels = firing[0]["metric"]
    assert labels["service"] == "driftscope" and labels["severity"] == "warning"
    assert labels["model_version"] == "v1" and labels["segment"] in {"all", "billing"}
    request = next(r for r in sink.received if ours(json.loads(r.body)))
    verify(request.body, request.headers["X-Driftscope-Signature"], SecretStr(hmac_key),
           now=time.time())
    payload = json.loads(request.body)
    assert payload["schema"] == "driftscope.alert.v1" and payload["event"] == "alert.firing"
    # drift alerts group like incidents: one notification per model version
    assert payload["group"]["labels"] == {"model": model, "model_version": "v1"}
    ours_alerts = [a for a in payload["alerts"] if a["labels"].get("model") == model]
    assert {a["labels"]["alertname"] for a in ours_alerts} <= {
        "DriftscopeDriftAlarm", "DriftscopeDriftIncident"}
    alarms = [a for a in ours_alerts if a["labels"]["alertname"] == "DriftscopeDriftAlarm"]
    assert alarms and {a["labels"]["segment"] for a in alarms} <= {"all", "billing"}
    alert = alarms[0]
    assert alert["status"] == "firing"
    assert alert["annotations"]["summary"].startswith(
        f"Drift on {model}@v1 [{alert['labels']['segment']}]")
