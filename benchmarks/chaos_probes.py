"""The chaos suite's private stack and its collector probes (``benchmarks/chaos.py`` runs them).

Each probe fills a ``Row`` (``benchmarks.chaos``) from what it can see from outside, as an
operator would: what the broker acknowledged, the checkpoints' totals and the incidents in
Redis, the dead-letter topic, the processes' ``/metrics``. Collectors are real
``driftscope collector`` processes (``tests/collector_harness.py``); the stack is
``deploy/local/stack`` in a directory and on ports of its own (``benchmarks/soak.py``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import TopicPartition

from benchmarks.soak import POISON, PrivateStack
from driftscope_llm.services.bus.kafka import consumer_lag
from driftscope_llm.services.bus.settings import KafkaSettings
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.store.keys import StoreKeys
from tests.collector_harness import SMALL_WINDOWS, CollectorProcess, checkpoint_totals, incidents
from tests.stack import CLI_MODULE

if TYPE_CHECKING:
    from benchmarks.chaos import Row

__all__ = ["COLLECTOR_PROBES", "Chaos"]

REPO = Path(__file__).resolve().parents[1]

MORE_POISON: list[bytes] = [
    b"[]",                                                             # not_object
    b'{"event_id": "p"}',                                              # missing_field
    b'{"event_id":"p","ts":"2026-11-28T10:00:00Z","model":"m","output":5}',   # wrong_type
    b'{"event_id":"p","ts":"2026-11-28T10:00:00Z","model":"m","output":"o","latency_ms":NaN}',
    b'{"event_id":"p","ts":"2026-11-28T10:00:00Z","model":"m","output":"'
    + b"x" * 1_000_100 + b'"}',                                        # too_large (1 MB event)
]


class Chaos:
    """A private Kafka + Redis for the probes, and what they share: topics, a Redis database
    per probe, the collectors they start (all stopped on exit), the scale."""

    def __init__(self, work: Path, *, reduced: bool, say: Callable[[str], None]) -> None:
        self.work = work
        self.reduced = reduced
        self.say = say
        self.stack = PrivateStack(work / "stack")
        self.root = work / "stack"
        self._db = 0
        self._collectors: list[CollectorProcess] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Chaos:
        self.say(f"private stack in {self.work} (kafka {self.stack.bootstrap}, "
                 f"redis {self.stack.redis_url})")
        self.stack.run("up", "kafka", "redis")
        return self

    def ensure_up(self) -> list[str]:
        """Start Kafka or Redis again when it does not answer (a probe before may have left it
        down, or something outside stopped it); the components restarted, with fresh data."""
        down = [name for name in ("kafka", "redis") if not self._answers(name)]
        if down:
            self.stack.run("up", *down)
        return down

    def _answers(self, name: str) -> bool:
        if name == "redis":
            try:
                return bool(redis.Redis.from_url(self.stack.redis_url,
                                                 socket_timeout=3).ping())
            except redis.exceptions.RedisError:
                return False
        host, port = self.bootstrap.split(":")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
            return True
        except OSError:
            return False

    def __exit__(self, *exc: object) -> None:
        for c in self._collectors:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGCONT)
                c.proc.kill()
                c.proc.wait(timeout=30)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        self.stack.run("down", "kafka", "redis")

    # sizes -------------------------------------------------------------------------------------
    def n(self, full: int) -> int:
        return full // 2 if self.reduced else full

    def pause_s(self, full: float) -> float:
        return min(full, 8.0) if self.reduced else full

    # resources ---------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return self.stack.bootstrap

    def topic(self, name: str, partitions: int = 1) -> str:
        topic = f"chaos.{name}"
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                          replication_factor=1)])
        finally:
            admin.close()
        return topic

    def redis_url(self) -> str:
        """A Redis database of its own for each probe (incidents are global keys)."""
        self._db += 1
        return self.stack.redis_url.rsplit("/", 1)[0] + f"/{self._db}"

    def collector(self, topic: str, redis_url: str, *, group: str,
                  config: Mapping[str, Any] = SMALL_WINDOWS,
                  max_idle: float | None = 15.0) -> CollectorProcess:
        workdir = self.work / group
        workdir.mkdir(exist_ok=True)
        c = CollectorProcess(self.bootstrap, redis_url, topic, workdir, config=config,
                             group_id=group)
        self._collectors.append(c)
        return c.start(max_idle=max_idle)

    def pid(self, component: str) -> int:
        return int((self.root / component / f"{component}.pid").read_text().split()[0])


# measuring -------------------------------------------------------------------------------------

def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send (key, value) pairs with acks=all; the number the broker acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             max_request_size=2_000_000)
    futures = [producer.send(topic, key=k, value=v) for k, v in messages]
    producer.flush(timeout=120)
    acked = sum(1 for f in futures if f.succeeded())
    producer.close()
    return acked


def keyed(events: Iterable[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    return [(e["model"].encode(), json.dumps(e).encode()) for e in events]


def dead_letters(bootstrap: str, topic: str) -> int:
    """Distinct dead letters on ``topic``.dlq (a crash may write one twice: same source)."""
    consumer = KafkaConsumer(f"{topic}.dlq", bootstrap_servers=bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=4000)
    seen = {(d["source_partition"], d["source_offset"]) for d in
            (json.loads(m.value) for m in consumer)}
    consumer.close()
    return len(seen)


def wait_totals(client: redis.Redis, topic: str, at_least: int,
                collectors: list[CollectorProcess], timeout: float = 300.0) -> int:
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        try:
            got = checkpoint_totals(client, topic)
        except redis.exceptions.RedisError:
            got = 0
        if got >= at_least:
            return got
        if not any(c.proc is not None and c.proc.poll() is None for c in collectors):
            break
        time.sleep(0.3)
    raise AssertionError(f"checkpoint totals {got} never reached {at_least}")


def missing_states(client: redis.Redis, topic: str, partitions: int) -> tuple[int, int]:
    """(streams whose state a checkpoint lists but Redis does not hold, streams listed)."""
    keys = StoreKeys("driftscope:")
    missing = listed = 0
    for p in range(partitions):
        head = client.get(keys.checkpoint(topic, p))
        if head is None:
            continue
        streams = json.loads(head).get("streams", [])
        listed += len(streams)
        missing += sum(1 for sid in streams
                       if not client.exists(keys.checkpoint_stream(topic, p, sid)))
    return missing, listed


def settle(row: Row, client: redis.Redis, topic: str, valid: int, expected: int) -> None:
    """Counted, lost, duplicated, incidents and false alerts from what Redis holds."""
    row.counted = checkpoint_totals(client, topic)
    row.lost = max(0, valid - row.counted)
    row.duplicated = max(0, row.counted - valid)
    found = incidents(client)
    row.incidents_expected = expected
    row.incidents_opened = len(found)
    row.false_alerts += max(0, len(found) - expected)


def drifting(n: int, *, seed: int, model: str = "support-bot") -> list[dict[str, Any]]:
    """``n`` events of one model; billing starts refusing 40% at two thirds (one incident)."""
    return list(generate_events(StreamSpec(
        n=n, seed=seed, model=model, prefix=model,
        drifts=(Drift(start=2 * n // 3, route="billing", refusal_rate=0.4),))))


# probes ----------------------------------------------------------------------------------------

def poison_sigkill(chaos: Chaos, row: Row) -> None:
    n = chaos.n(6000)
    events = drifting(n, seed=11)
    shapes = POISON + MORE_POISON
    poison = shapes * (2 if chaos.reduced else 4)
    messages = keyed(events)
    for i, p in enumerate(poison):  # spread through the stream
        messages.insert((i + 1) * len(messages) // (len(poison) + 1), (b"poison", p))
    topic = chaos.topic("poison")
    url = chaos.redis_url()
    client = redis.Redis.from_url(url)
    row.produced = produce(chaos.bootstrap, topic, messages)
    c = chaos.collector(topic, url, group="g-poison")
    for share in (4, 2):
        wait_totals(client, topic, n // share, [c])
        c.kill()
        chaos.say(f"    SIGKILL at {checkpoint_totals(client, topic)} counted")
        c.start(max_idle=15)
    assert c.wait_exit(timeout=600) == 0, c.log_text()
    settle(row, client, topic, len(events), expected=1)
    row.dead_lettered = dead_letters(chaos.bootstrap, topic)
    row.lost += max(0, len(poison) - row.dead_lettered)
    row.notes.append(f"{len(poison)} poison messages of {len(shapes)} shapes, 2 SIGKILLs")


def cardinality(chaos: Chaos, row: Row) -> None:
    rng = random.Random(5)
    n = chaos.n(8000)
    names = [f"m{i}\x1b[2J|:#%*{'x' * rng.randrange(200)}" for i in range(n // 3)]
    events = list(generate_events(StreamSpec(n=n, seed=6)))
    for e in events:
        e["model"] = rng.choice(names)
        e["model_version"] = f"v{rng.randrange(1000)}\u202e"
        e["segment"] = {"route": f"r{rng.randrange(10**6)}", f"l{rng.randrange(20)}": "x"}
    topic = chaos.topic("cardinality")
    url = chaos.redis_url()
    client = redis.Redis.from_url(url)
    row.produced = produce(chaos.bootstrap, topic, keyed(events))
    c = chaos.collector(topic, url, group="g-cardinality", config={"checkpoint_every": 500})
    wait_totals(client, topic, len(events), [c])
    assert c.proc is not None
    rss = _rss_mb(c.proc.pid)
    page = urllib.request.urlopen(c.metrics_url, timeout=60).read()
    series = sum(1 for ln in page.decode().splitlines() if ln and not ln.startswith("#"))
    c.stop()
    settle(row, client, topic, len(events), expected=0)
    row.notes.append(f"{len(names)} model names x 1,000 versions x 10^6 routes: RSS {rss:.0f} MB, "
                     f"/metrics {len(page) / 1024:.0f} KB ({series} series)")


def scale_out(chaos: Chaos, row: Row) -> None:
    per_model = chaos.n(4000)
    models = [f"model-{c}" for c in "abcd"]
    streams = [drifting(per_model, seed=20 + i, model=m) for i, m in enumerate(models)]
    ordered = [e for group in zip(*streams, strict=True) for e in group]
    half = 2 * len(ordered) // 3 - len(models)  # everything before the drifts
    topic = chaos.topic("scale", partitions=4)
    url = chaos.redis_url()
    client = redis.Redis.from_url(url)
    row.produced = produce(chaos.bootstrap, topic, keyed(ordered[:half]))
    a = chaos.collector(topic, url, group="g-scale", max_idle=30)
    b = chaos.collector(topic, url, group="g-scale", max_idle=30)
    wait_totals(client, topic, half // 4, [a, b])
    a.kill()
    chaos.say("    SIGKILL one member")
    a.start(max_idle=30)
    wait_totals(client, topic, half // 2, [a, b])
    assert b.proc is not None
    b.proc.send_signal(signal.SIGSTOP)  # past the session timeout (kafka-python: 10 s)
    chaos.say("    SIGSTOP the other past the session timeout")
    time.sleep(chaos.pause_s(20.0) + 4)
    b.proc.send_signal(signal.SIGCONT)
    row.produced += produce(chaos.bootstrap, topic, keyed(ordered[half:]))
    wait_totals(client, topic, len(ordered), [a, b], timeout=600)
    exported, real = _settled_lag([a, b], chaos.bootstrap, "g-scale", topic, 4)
    if exported > real:
        row.false_alerts += 1
        row.notes.append(f"stale lag: the members export {exported} messages of lag, "
                         f"the group's real lag is {real}")
    a.stop()
    b.stop()
    settle(row, client, topic, len(ordered), expected=len(models))
    row.notes.append("2 members on 4 partitions, one SIGKILLed, one SIGSTOPped; lag exported "
                     f"{exported}, real {real}")


def redis_outage(chaos: Chaos, row: Row) -> None:
    n = chaos.n(6000)
    events = drifting(n, seed=31)
    cut = 2 * n // 3
    topic = chaos.topic("redis")
    url = chaos.redis_url()
    client = redis.Redis.from_url(url)
    row.produced = produce(chaos.bootstrap, topic, keyed(events[:cut]))
    c = chaos.collector(topic, url, group="g-redis", max_idle=20)
    wait_totals(client, topic, n // 4, [c])
    pid = chaos.pid("redis")
    pause = chaos.pause_s(30.0)
    os.kill(pid, signal.SIGSTOP)
    chaos.say(f"    Redis paused {pause:.0f}s")
    time.sleep(pause)
    os.kill(pid, signal.SIGCONT)
    wait_totals(client, topic, n // 2, [c])
    chaos.stack.run("restart", "redis")  # no persistence: it comes back empty
    chaos.say("    Redis restarted empty")
    row.produced += produce(chaos.bootstrap, topic, keyed(events[cut:]))
    assert c.wait_exit(timeout=600) == 0, c.log_text()
    missing, listed = missing_states(client, topic, 1)
    settle(row, client, topic, len(events), expected=1)
    if missing:
        row.lost += 1  # detector state gone while its counts remain: the next restart's loss
        row.notes.append(f"{missing} of {listed} stream states missing from the checkpoint "
                         "after the empty restart")
    row.notes.append(f"Redis paused {pause:.0f}s, then restarted empty")


def broker_restart(chaos: Chaos, row: Row) -> None:
    n = chaos.n(6000)
    events = drifting(n, seed=41)
    cut = 2 * n // 3
    topic = chaos.topic("broker")
    url = chaos.redis_url()
    client = redis.Redis.from_url(url)
    row.produced = produce(chaos.bootstrap, topic, keyed(events[:cut]))
    c = chaos.collector(topic, url, group="g-broker", max_idle=30)
    wait_totals(client, topic, n // 3, [c])
    chaos.stack.run("restart", "kafka")
    chaos.say("    broker restarted")
    row.produced += produce(chaos.bootstrap, topic, keyed(events[cut:]))
    assert c.wait_exit(timeout=600) == 0, c.log_text()
    settle(row, client, topic, len(events), expected=1)
    row.notes.append("broker restarted with the same data")


def _rollout(first_ts: str, *, which: str, n_v1: int, n_v2: int) -> list[dict[str, Any]]:
    """v1 normal, then v2 refusing 30% from its first event; one first event's ts rewritten."""
    start = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    v1 = list(generate_events(StreamSpec(n=n_v1, seed=51, start=start, prefix="a")))
    v2 = list(generate_events(StreamSpec(
        n=n_v2, seed=52, model_version="v2", prefix="b", start=start + timedelta(seconds=n_v1),
        drifts=(Drift(start=0, refusal_rate=0.3),))))
    (v1 if which == "v1" else v2)[0]["ts"] = first_ts
    return v1 + v2


def _clock_skew(chaos: Chaos, row: Row, first_ts: str, which: str) -> None:
    events = _rollout(first_ts, which=which, n_v1=chaos.n(3200), n_v2=chaos.n(2000))
    control = _replay_incidents(chaos.work, _rollout("2026-11-28T09:00:00Z", which=which,
                                                     n_v1=chaos.n(3200), n_v2=chaos.n(2000)))
    topic = chaos.topic(f"skew-{which}")
    url = chaos.redis_url()
    client = redis.Redis.from_url(url)
    row.produced = produce(chaos.bootstrap, topic, keyed(events))
    c = chaos.collector(topic, url, group=f"g-skew-{which}")
    assert c.wait_exit(timeout=600) == 0, c.log_text()
    settle(row, client, topic, len(events), expected=control)
    row.notes.append(f"{which}'s first event at {first_ts}; with ordinary timestamps the same "
                     f"rollout opens {control} incident(s) (replay, same run)")


def clock_skew_v2_year1(chaos: Chaos, row: Row) -> None:
    _clock_skew(chaos, row, "0001-01-01T00:00:00Z", "v2")


def clock_skew_v1_9999(chaos: Chaos, row: Row) -> None:
    _clock_skew(chaos, row, "9999-12-31T23:59:59Z", "v1")


def _replay_incidents(work: Path, events: list[dict[str, Any]]) -> int:
    path = work / "control.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    cfg = work / "control.yaml"
    cfg.write_text(json.dumps(dict(SMALL_WINDOWS)))
    done = subprocess.run([sys.executable, "-m", CLI_MODULE, "replay", str(path), "--json",
                           "--no-embed", "--config", str(cfg)],
                          capture_output=True, text=True, cwd=REPO, timeout=600, check=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"})
    return len({json.loads(line)["incident_id"] for line in done.stdout.splitlines() if line})


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _lag(c: CollectorProcess) -> int:
    if c.proc is None or c.proc.poll() is not None:
        return 0
    return int(sum(v for k, v in c.metrics(timeout=30).items()
                   if k.startswith("driftscope_consumer_lag_messages")))


def _settled_lag(members: Sequence[CollectorProcess], bootstrap: str, group: str, topic: str,
                 partitions: int, *, within_s: float = 60.0) -> tuple[int, int]:
    """(lag the members export, the group's real lag) once the exported lag is no more than the
    real one, or as they stand after ``within_s``. A member measures its lag every 5 s
    (``lag_every_s``) and a loaded machine stretches that, so one reading just after the last
    message may show the lag of the batch it was processing: a stale series is one that stays
    above the real lag, and ``DriftscopeConsumerLagHigh`` needs 10 minutes of it to page."""
    deadline = time.monotonic() + within_s
    while True:
        exported = sum(_lag(c) for c in members)
        real = _group_lag(bootstrap, group, topic, partitions)
        if exported <= real or time.monotonic() >= deadline:
            return exported, real
        time.sleep(1.0)


def _group_lag(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """The group's real lag on ``topic``: log end minus committed offset, summed (a partition
    with nothing committed lags by its whole log)."""
    lags = {g.partition: g.lag for g in
            consumer_lag(KafkaSettings(bootstrap_servers=bootstrap), [group])[group]
            if g.topic == topic}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        consumer.close()
    return sum(lags.get(tp.partition, end) for tp, end in ends.items())


COLLECTOR_PROBES: dict[str, Callable[[Chaos, Row], None]] = {
    "poison_sigkill": poison_sigkill,
    "cardinality": cardinality,
    "scale_out": scale_out,
    "redis": redis_outage,
    "broker_restart": broker_restart,
    "clock_skew_v2_year1": clock_skew_v2_year1,
    "clock_skew_v1_9999": clock_skew_v1_9999,
}
