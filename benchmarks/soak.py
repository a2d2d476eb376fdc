"""Soak: one collector under hostile, high-cardinality traffic for a bounded time.

What it runs, on a PRIVATE Kafka + Redis (the project's stack script with its own directory and
ports, so restarting the broker disturbs nobody else's stack):

- a producer sending ``--rate`` messages/s for ``--minutes``, spread over ``--models`` distinct
  model names (thousands: far past the collector's model cap, so most fold into ``other``), three
  versions each and the synthetic stream's routes; a ``--poison`` share of the messages are the
  poison shapes of issue 19 (5,000-deep nesting, 5,000-digit integers, lone surrogates,
  ``1e999``, bytes that are not JSON);
- one ``driftscope collector`` process on defaults (embedder off: this measures the collector's
  own memory, not the ONNX session's);
- a broker restart (``stack restart kafka``) at ``--restart-at`` of the run;
- a sampler every ``--sample-s`` seconds: the collector's RSS (``/proc/PID/status``), the size of
  its ``/metrics`` page (bytes, series), and what it has consumed.

At the end the producer stops, the collector drains the topic, and the run reports events lost:
acknowledged by the broker but neither observed (``driftscope_events_processed_total``) nor
dead-lettered (``driftscope_events_invalid_total``). Baseline, measured in the same run: the RSS
and ``/metrics`` size at the end of warm-up (the first sample after ``--warmup-s``); the table's
ratios are against it (target: RSS ratio ≈ 1 after warm-up, 0 lost).

    python -m benchmarks.soak [--minutes 10] [--rate 150] [--models 5000] [--poison 0.02]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from tests.collector_harness import CollectorProcess, free_port
from tests.stack import STACK_SCRIPT

POISON: list[bytes] = [
    b'{"event_id":"p","ts":"2026-11-28T10:00:00Z","model":"m","output":"o","metadata":'
    + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"event_id":"p","ts":"2026-11-28T10:00:00Z","model":"m","output":"o","latency_ms":'
    + b"9" * 5000 + b"}",
    b'{"event_id":"p","ts":"2026-11-28T10:00:00Z","model":"m","output":"\\ud800"}',
    b"1e999",
    b"\xff\xfe not json",
]


class PrivateStack:
    """Kafka + Redis from ``deploy/local/stack`` in a directory and on ports of their own."""

    def __init__(self, root: Path) -> None:
        self.env = {**os.environ, "DRIFTSCOPE_STACK_DIR": str(root),
                    "DRIFTSCOPE_KAFKA_PORT": str(free_port()),
                    "DRIFTSCOPE_KAFKA_CONTROLLER_PORT": str(free_port()),
                    "DRIFTSCOPE_REDIS_PORT": str(free_port())}
        self.bootstrap = f"127.0.0.1:{self.env['DRIFTSCOPE_KAFKA_PORT']}"
        self.redis_url = f"redis://127.0.0.1:{self.env['DRIFTSCOPE_REDIS_PORT']}/0"

    def run(self, *args: str) -> None:
        done = subprocess.run([str(STACK_SCRIPT), *args], env=self.env, capture_output=True,
                              text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"stack {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


@dataclass
class Sample:
    t: float
    rss_mb: float
    metrics_kb: float
    series: int
    consumed: float


@dataclass
class Sent:
    """Messages the broker acknowledged, by kind; sends that failed are not the collector's."""

    valid: int = 0
    poison: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, poison: bool) -> None:
        with self.lock:
            if poison:
                self.poison += 1
            else:
                self.valid += 1

    def fail(self) -> None:
        with self.lock:
            self.failed += 1


def _messages(models: int, poison_share: float, seed: int) -> Iterator[tuple[bytes, bool]]:
    rng = random.Random(seed)
    events = generate_events(StreamSpec(n=10**8, seed=seed, prefix="soak"))
    for i in itertools.count():
        if rng.random() < poison_share:
            yield POISON[i % len(POISON)], True
            continue
        ev = next(events)
        ev["model"] = f"model-{rng.randrange(models):05d}"
        ev["model_version"] = f"v{rng.randrange(3)}"
        yield json.dumps(ev).encode(), False


def _produce(bootstrap: str, topic: str, rate: float, until: float, models: int,
             poison_share: float, sent: Sent) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             retries=1_000_000, max_block_ms=180_000,
                             request_timeout_ms=30_000, retry_backoff_ms=500,
                             max_in_flight_requests_per_connection=1)
    start = time.monotonic()
    for n, (value, poison) in enumerate(_messages(models, poison_share, seed=7)):
        now = time.monotonic()
        if now >= until:
            break
        ahead = start + n / rate - now
        if ahead > 0:
            time.sleep(ahead)
        future = producer.send(topic, value=value)
        future.add_callback(lambda _md, p=poison: sent.ack(p))
        future.add_errback(lambda _exc: sent.fail())
    producer.flush(timeout=300)
    producer.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _sample(c: CollectorProcess, t0: float, *, timeout: float = 10.0) -> Sample:
    """One sample; a scrape slower than ``timeout`` (Prometheus's default is 10 s) is recorded
    as NaN, as Prometheus would record it as a failed scrape."""
    assert c.proc is not None
    rss = _rss_mb(c.proc.pid)
    try:
        text = urllib.request.urlopen(c.metrics_url, timeout=timeout).read()
    except OSError:
        return Sample(time.monotonic() - t0, rss, float("nan"), -1, float("nan"))
    lines = [ln for ln in text.decode().splitlines() if ln and not ln.startswith("#")]
    consumed = sum(float(ln.rpartition(" ")[2]) for ln in lines
                   if ln.startswith("driftscope_events_consumed_total"))
    return Sample(time.monotonic() - t0, rss, len(text) / 1024, len(lines), consumed)


def _total(metrics: dict[str, float], name: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(name + "{") or k == name)


def _dlq_count(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    n = sum(1 for _ in consumer)
    consumer.close()
    return n


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="driftscope-soak-"))
    stack = PrivateStack(work / "stack")
    print(f"private stack in {work} (kafka {stack.bootstrap}, redis {stack.redis_url})")
    stack.run("up", "kafka", "redis")
    collector: CollectorProcess | None = None
    try:
        topic = "llm.outputs.soak"
        admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap)
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        admin.close()
        collector = CollectorProcess(stack.bootstrap, stack.redis_url, topic, work, config={},
                                     group_id="soak").start()
        duration = args.minutes * 60
        t0 = time.monotonic()
        sent = Sent()
        producer = threading.Thread(target=_produce, args=(
            stack.bootstrap, topic, args.rate, t0 + duration, args.models, args.poison, sent),
            daemon=True)
        producer.start()
        samples: list[Sample] = []
        restarted = False
        while producer.is_alive():
            time.sleep(args.sample_s)
            samples.append(_sample(collector, t0))
            s = samples[-1]
            print(f"{s.t:7.0f}s rss {s.rss_mb:7.1f} MB  /metrics {s.metrics_kb:8.1f} KB "
                  f"{s.series:7d} series  consumed {s.consumed:9.0f}", flush=True)
            if not restarted and s.t >= duration * args.restart_at:
                print("restarting the broker", flush=True)
                stack.run("restart", "kafka")
                restarted = True
        producer.join()
        produced = sent.valid + sent.poison
        drain_until = time.monotonic() + args.drain_s
        while time.monotonic() < drain_until and not (
                _sample(collector, t0, timeout=60).consumed >= produced):
            time.sleep(2)
        time.sleep(args.sample_s)  # let a checkpoint and the gauges catch up
        samples.append(_sample(collector, t0, timeout=60))
        metrics = collector.metrics(timeout=120)  # a loaded collector answers slowly
        processed = _total(metrics, "driftscope_events_processed_total")
        invalid = _total(metrics, "driftscope_events_invalid_total")
        folded = _total(metrics, "driftscope_streams_folded_total")
        dlq = _dlq_count(stack.bootstrap, f"{topic}.dlq")
        exit_code = collector.stop()
        _report(args, samples, sent, processed, invalid, dlq, folded, exit_code)
        return 0
    finally:
        if collector is not None and collector.proc is not None and collector.proc.poll() is None:
            collector.proc.kill()
        stack.run("down", "kafka", "redis")


def _report(args: argparse.Namespace, samples: list[Sample], sent: Sent, processed: float,
            invalid: float, dlq: int, folded: float, exit_code: int) -> None:
    warm = next((s for s in samples if s.t >= args.warmup_s), samples[0])
    print()
    print(f"soak: {args.minutes} min at {args.rate:g} msg/s, {args.models} models x 3 versions, "
          f"{args.poison:.0%} poison, broker restarted at {args.restart_at:.0%}")
    print("| time | RSS MB | RSS / warm-up | /metrics KB | series | consumed |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    step = max(1, len(samples) // 12)
    shown = samples[::step] + ([] if (len(samples) - 1) % step == 0 else [samples[-1]])
    for s in shown:
        print(f"| {s.t / 60:.1f} min | {s.rss_mb:.0f} | {s.rss_mb / warm.rss_mb:.2f} | "
              f"{s.metrics_kb:.0f} | {s.series} | {s.consumed:.0f} |")
    lost = sent.valid + sent.poison - int(processed) - int(invalid)
    print()
    print(f"acknowledged: {sent.valid} valid + {sent.poison} poison (send failures, not the "
          f"collector's: {sent.failed})")
    print(f"observed {processed:.0f}, dead-lettered {invalid:.0f} (DLQ topic holds {dlq}), "
          f"folded into 'other' {folded:.0f}")
    print(f"events lost: {lost}   collector exit code: {exit_code}")
    print(f"RSS after warm-up ({warm.t / 60:.1f} min): {warm.rss_mb:.0f} MB -> end "
          f"{samples[-1].rss_mb:.0f} MB (x{samples[-1].rss_mb / warm.rss_mb:.2f}); /metrics "
          f"{samples[-1].metrics_kb:.0f} KB, {samples[-1].series} series")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=150.0, help="messages per second")
    p.add_argument("--models", type=int, default=5000, help="distinct model names")
    p.add_argument("--poison", type=float, default=0.02, help="share of poison messages")
    p.add_argument("--restart-at", type=float, default=0.5, help="broker restart, share of run")
    p.add_argument("--sample-s", type=float, default=15.0)
    p.add_argument("--warmup-s", type=float, default=120.0)
    p.add_argument("--drain-s", type=float, default=300.0)
    raise SystemExit(run(p.parse_args()))


if __name__ == "__main__":
    main()
