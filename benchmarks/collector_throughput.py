"""Collector throughput against the real broker, with its baselines measured in the same run.

Prints events/s for:

- a bare kafka-python consumer loop over the topic (baseline for the scalar path);
- the same loop through the bus interface (``KafkaBus``), the collector's I/O edge alone;
- the collector with scalar signals only (validation, signals, detectors, Redis checkpoints);
- a bare ONNX Runtime session encoding the same output texts (baseline for the embedding path);
- the collector with embeddings at sampling rate 1.0 and at the default rate;

and the ratios the collector issue sets targets on (scalar ≥ 0.5× the bare consumer; embedding
path ≥ 0.8× the bare encoder). The OTLP path (issue 13): the same events as GenAI spans, 16 to an
``ExportTraceServiceRequest`` message as the OpenTelemetry Collector's Kafka exporter batches
them, encoded ``otlp_proto`` and ``otlp_json``, through the same collector (scalar signals),
against the OutputEvent path measured in the same run (target ≥ 0.5×). Needs the local stack
(``deploy/local/stack up``).

    python -m benchmarks.collector_throughput [--events 20000] [--skip-embeddings]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from pathlib import Path
from typing import cast

import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from driftscope_llm.services.bus.kafka import KafkaBus
from driftscope_llm.services.collector.build import open_embedder
from driftscope_llm.services.collector.metrics import CollectorMetrics
from driftscope_llm.services.collector.pipeline import Pipeline
from driftscope_llm.services.collector.service import Collector
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from driftscope_llm.services.config import (
    EmbedderSettings,
    KafkaSettings,
    SegmentSettings,
    TopicSettings,
)
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.ingest import IngestSettings, RecordDecoder
from driftscope_llm.services.store.base import StateStore
from driftscope_llm.services.store.redis_store import RedisStore


def _stack_env() -> dict[str, str]:
    env = dict(os.environ)
    path = Path(os.environ.get("DRIFTSCOPE_STACK_DIR", "/tmp/driftscope-stack")) / "stack.env"
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                env.setdefault(k, v)
    return env


def _topic(bootstrap: str, events: list[bytes]) -> str:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(name, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 18)
    for e in events:
        producer.send(name, key=b"support-bot", value=e)
    producer.flush()
    producer.close()
    return name


def bare_consumer(bootstrap: str, topic: str, n: int) -> float:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=f"bare-{uuid.uuid4().hex[:6]}",
                             max_poll_records=500)
    seen, start = 0, 0.0
    while seen < n:
        batch = consumer.poll(timeout_ms=1000)
        if seen == 0 and batch:
            start = time.perf_counter()
        for records in batch.values():
            for r in records:
                seen += 1
                _ = r.value
    elapsed = time.perf_counter() - start
    consumer.close()
    return n / elapsed


def bus_consumer(bootstrap: str, topic: str, n: int) -> float:
    """The same loop as :func:`bare_consumer` through the bus interface (KafkaBus.poll): the
    cost of the collector's I/O edge alone, without any processing."""
    bus = KafkaBus(KafkaSettings(bootstrap_servers=bootstrap),
                   group_id=f"bus-{uuid.uuid4().hex[:6]}")
    bus.subscribe([topic])
    seen, start = 0, 0.0
    while seen < n:
        batch = bus.poll(1.0)
        if seen == 0 and batch:
            start = time.perf_counter()
        for messages in batch.values():
            for m in messages:
                seen += 1
                _ = m.value
    elapsed = time.perf_counter() - start
    bus.close()
    return n / elapsed


def collector_rate(bootstrap: str, topic: str, n: int, redis_url: str,
                   embed: EmbedderSettings, decoder: RecordDecoder | None = None) -> float:
    return collector_rates(bootstrap, topic, n, redis_url, embed, decoder)[0]


def collector_rates(bootstrap: str, topic: str, n: int, redis_url: str,
                    embed: EmbedderSettings, decoder: RecordDecoder | None = None
                    ) -> tuple[float, float]:
    """Events per wall-clock second and per CPU second of this process (the collector and
    kafka-python's IO thread): on a shared machine the CPU rate is the steadier comparison."""
    client = redis.Redis.from_url(redis_url)
    store = cast(StateStore, RedisStore(client, key_prefix=f"bench-{uuid.uuid4().hex[:6]}:"))
    embedder = open_embedder(embed) if embed.enabled else None
    pipeline = Pipeline(DriftSettings(), SignalExtractor(SignalSettings()),
                        SegmentSettings(label="route", allowed=["billing", "shipping", "account",
                                                                "tech"]),
                        store, embedder=embedder, embed_sampling_rate=embed.sampling_rate)
    bus = KafkaBus(KafkaSettings(bootstrap_servers=bootstrap),
                   group_id=f"bench-{uuid.uuid4().hex[:6]}")
    c = Collector(pipeline, store, CollectorMetrics(CollectorRegistry()), bus,
                  TopicSettings(outputs=topic, dead_letter=f"{topic}.dlq",
                                anomalies=f"{topic}.anomalies"),
                  checkpoint_every=2000, decoder=decoder)
    start, cpu_start = time.perf_counter(), time.process_time()
    c.run(max_idle_s=2.0)
    elapsed = time.perf_counter() - start - 2.0  # the idle wait that ends the run
    cpu = time.process_time() - cpu_start
    client.close()
    return n / elapsed, n / cpu


def bare_encoder(texts: list[str], embed: EmbedderSettings, batch: int = 500) -> float:
    enc = open_embedder(embed)
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        enc.encode(texts[i:i + batch])
    return len(texts) / (time.perf_counter() - start)


def otlp_messages(events: list[dict[str, object]], encoding: str,
                  per_message: int = 16) -> list[bytes]:
    """The events as GenAI spans, ``per_message`` to an export, in the exporter's encoding."""
    from tests.fixtures.ingest.spans import export_request, genai_span, to_otlp_json

    out = []
    for i in range(0, len(events), per_message):
        request = export_request([genai_span(e) for e in events[i:i + per_message]])
        out.append(request.SerializeToString() if encoding == "otlp_proto"
                   else to_otlp_json(request))
    return out


def otlp_rates(bootstrap: str, redis_url: str, events: list[dict[str, object]],
               raw: list[bytes]) -> dict[str, tuple[float, float]]:
    """(wall, CPU) events/s of the collector on the OutputEvents and on the same events as OTLP
    messages of each encoding (route as segment label in both), one after the other."""
    decoder = RecordDecoder(IngestSettings(segment_attributes=["route"]))
    off = EmbedderSettings(enabled=False)
    rates = {"driftscope": collector_rates(bootstrap, _topic(bootstrap, raw), len(raw),
                                           redis_url, off, decoder)}
    for encoding in ("otlp_proto", "otlp_json"):
        topic = _topic(bootstrap, otlp_messages(events, encoding))
        rates[encoding] = collector_rates(bootstrap, topic, len(events), redis_url, off, decoder)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--embed-events", type=int, default=2000)
    ap.add_argument("--skip-embeddings", action="store_true",
                    help="Measure the scalar and OTLP paths only.")
    args = ap.parse_args()
    env = _stack_env()
    bootstrap = env.get("DRIFTSCOPE_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    redis_url = env.get("DRIFTSCOPE_REDIS_URL", "redis://127.0.0.1:16379/0")

    events = list(generate_events(StreamSpec(n=args.events, seed=7)))
    raw = [json.dumps(e).encode() for e in events]
    topic = _topic(bootstrap, raw)
    bare = bare_consumer(bootstrap, topic, len(raw))
    through_bus = bus_consumer(bootstrap, topic, len(raw))
    scalar = collector_rate(bootstrap, topic, len(raw), redis_url,
                            EmbedderSettings(enabled=False))
    otlp = otlp_rates(bootstrap, redis_url, events, raw)
    print(f"{'path':<44} {'events/s':>10} {'ratio':>8}  target")
    print(f"{'bare kafka-python consumer':<44} {bare:>10.0f} {1.0:>8.2f}")
    print(f"{'the same loop through the bus (KafkaBus)':<44} {through_bus:>10.0f} "
          f"{through_bus / bare:>8.2f}")
    print(f"{'collector, scalar signals':<44} {scalar:>10.0f} {scalar / bare:>8.2f}  >= 0.50")
    base_wall, base_cpu = otlp["driftscope"]
    print(f"\n{'input path (scalar signals)':<44} {'wall ev/s':>10} {'ratio':>6} "
          f"{'CPU ev/s':>10} {'ratio':>6}  target (CPU ratio)")
    for name, (wall, cpu) in otlp.items():
        label = "OutputEvent (1/message)" if name == "driftscope" else f"{name} (16 spans/message)"
        print(f"{label:<44} {wall:>10.0f} {wall / base_wall:>6.2f} {cpu:>10.0f} "
              f"{cpu / base_cpu:>6.2f}" + ("" if name == "driftscope" else "  >= 0.50"))
    if args.skip_embeddings:
        return

    small = raw[: args.embed_events]
    texts = [e["output"] for e in events[: args.embed_events]]
    topic_e = _topic(bootstrap, small)
    full = EmbedderSettings(enabled=True, sampling_rate=1.0, batch_size=500)
    encoder = bare_encoder(texts, full)
    emb_full = collector_rate(bootstrap, topic_e, len(small), redis_url, full)
    default = EmbedderSettings(enabled=True)
    topic_d = _topic(bootstrap, small)
    emb_default = collector_rate(bootstrap, topic_d, len(small), redis_url, default)

    print(f"{'bare ONNX Runtime encoder':<44} {encoder:>10.0f} {1.0:>8.2f}")
    print(f"{'collector, embeddings at rate 1.0':<44} {emb_full:>10.0f} "
          f"{emb_full / encoder:>8.2f}  >= 0.80")
    print(f"{f'collector, embeddings at rate {default.sampling_rate}':<44} {emb_default:>10.0f} "
          f"{emb_default / encoder:>8.2f}")


if __name__ == "__main__":
    main()
