"""``driftscope status`` against the real stack: lag per group and partition, open incidents,
exit codes (1 when something is open, 3 when a service is unreachable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime

import redis
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from driftscope_llm.services.store.model import Incident
from driftscope_llm.services.store.redis_store import RedisStore
from tests.collector_harness import REPO, produce
from tests.stack import CLI_MODULE, StackInfo


def _status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", CLI_MODULE, "status", *args],
                          cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120, check=False)


def _alarms_per_model(prometheus_url: str) -> dict[str, float]:
    """``sum by (model) (driftscope_detector_alarm)`` asked of Prometheus directly."""
    q = urllib.parse.urlencode({"query": "sum by (model) (driftscope_detector_alarm)"})
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/query?{q}", timeout=10) as resp:
        rows = json.loads(resp.read())["data"]["result"]
    return {r["metric"].get("model", ""): float(r["value"][1]) for r in rows}


def test_status_reports_lag_and_open_incidents(stack: StackInfo, kafka_bootstrap: str,
                                               redis_url: str,
                                               new_topic: Callable[..., str]) -> None:
    topic = new_topic()
    group = f"status-{topic}"
    events = [{"event_id": f"e{i}", "ts": "2025-01-01T00:00:00Z", "model": "m", "output": "x"}
              for i in range(30)]
    assert produce(kafka_bootstrap, topic, events) == 30
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                             enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.commit({tp: OffsetAndMetadata(12, "", -1)})
    consumer.close()
    now = datetime.now(UTC)
    inc = Incident(id="inc-status", opened_at=now, updated_at=now, model="m",
                   model_version="v1", segment="all", signal="refusal", detector="cusum",
                   statistic=2.0, threshold=1.0, effect_size=0.1, event_id="e1")
    inc.transition(inc.state, now)
    RedisStore(redis.Redis.from_url(redis_url)).save_incident(inc)
    env = {"DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "DRIFTSCOPE_REDIS__URL": redis_url, "DRIFTSCOPE_PROMETHEUS_URL": stack.prometheus_url}

    before = _alarms_per_model(stack.prometheus_url)
    res = _status(env, "--json", "--group", group)
    after = _alarms_per_model(stack.prometheus_url)
    assert res.returncode == 1, res.stderr
    st = json.loads(res.stdout)
    assert all(st[s]["reachable"] for s in ("kafka", "redis", "prometheus"))
    rows = st["kafka"]["lag"][group]
    assert rows == [{"topic": topic, "partition": 0, "committed": 12, "end": 30, "lag": 18}]
    assert [i["id"] for i in st["redis"]["open_incidents"]] == ["inc-status"]
    # what Prometheus says, per model (other tests' collectors may come and go on the shared
    # stack: the status must equal the direct query whenever that did not change around it)
    assert st["prometheus"]["alarms_per_model"] in (before, after)

    down = _status({**env, "DRIFTSCOPE_REDIS__URL": "redis://127.0.0.1:1/0"}, "--json",
                   "--group", group)
    assert down.returncode == 3
    assert json.loads(down.stdout)["redis"]["reachable"] is False
