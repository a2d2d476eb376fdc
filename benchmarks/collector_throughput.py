"""Collector throughput against the real broker, with its baselines measured in the same run.

One run prints four tables (``docs/collector.md`` holds the latest):

1. **Scalar path.** A bare kafka-python consumer loop over the topic (baseline), the same with
   kafka-python's pure-Python CRC check (the consumer as it ran before ``crc32c`` became a
   dependency: what issue 18's figures were measured against), and the collector on scalar
   signals (validation, signals, detectors, incidents, Redis checkpoints): the event-by-event
   path of before (``batched=False``, 500 records a poll) and the batched path under a few
   consumer settings. Collector rates are *steady state*: the topic holds ``--warmup`` events
   first, which fill every stream's reference (and calibrate its detectors) untimed; the rate is
   measured over the ``--events`` after them. Each row also gives events per CPU second of this
   process, the steadier figure on a shared machine.
2. **Embedding path.** Outputs drawn from ``benchmarks/output_corpus.py`` (chat answers, code,
   lists, other languages ...): today's baseline, one fp32 ONNX Runtime session encoding 500
   texts a call (what the collector did before), against the collector embedding every event
   (rate 1.0) on its defaults (int8, length-sorted, one thread), end to end from Kafka.
3. **Fidelity.** int8 against fp32 embeddings on the corpus: mean and worst cosine and the share
   at or above 0.99, per kind of output.
4. **Detection.** A stream whose billing answers switch topic (``synthetic.Drift(topic=...)``),
   and the same stream without the switch, through the pipeline with each embedder: which
   embedding anomalies each raises, on which stream and at which event.

Plus the OTLP input path (issue 13) against the OutputEvent path, unless ``--skip-otlp``.
Needs the local stack (``deploy/local/stack up``) and an exported embedder (exported on first
use with the ``embedder-export`` extra).

    python -m benchmarks.collector_throughput [--events 20000] [--warmup 6000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.progress import Progress

from benchmarks.output_corpus import KINDS, corpus
from driftscope_llm.services.bus.base import Message, Partition
from driftscope_llm.services.bus.kafka import KafkaBus
from driftscope_llm.services.bus.settings import ConsumerSettings
from driftscope_llm.services.collector import isolation
from driftscope_llm.services.collector import service as collector_service
from driftscope_llm.services.collector.build import open_embedder
from driftscope_llm.services.collector.embedder import OnnxEmbedder, default_embedder_dir
from driftscope_llm.services.collector.metrics import CollectorMetrics
from driftscope_llm.services.collector.pipeline import Embedder, PartitionState, Pipeline
from driftscope_llm.services.collector.service import Collector
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.config import (
    EmbedderSettings,
    KafkaSettings,
    SegmentSettings,
    TopicSettings,
)
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.ingest import IngestSettings, RecordDecoder
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.store import MemoryStore
from driftscope_llm.services.store.base import StateStore
from driftscope_llm.services.store.redis_store import RedisStore

ROUTES = SegmentSettings(label="route", allowed=["billing", "shipping", "account", "tech"])
SMALL = DriftSettings(reference_size=400, min_reference_values=100, window_size=200,
                      min_window=50, test_every=25, cooldown_events=400)
"""The detection check's windows (those of the collector's integration tests)."""


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


class _PythonCrc:
    """kafka-python's record-batch CRC check in its pure-Python form, for one measurement (as
    it ran without the ``crc32c`` package)."""

    def __enter__(self) -> None:
        from kafka.record import default_records
        from kafka.record._crc32c import crc

        self._saved = default_records.calc_crc32c
        default_records.calc_crc32c = lambda view: crc(view)  # type: ignore[assignment]

    def __exit__(self, *exc: object) -> None:
        from kafka.record import default_records

        default_records.calc_crc32c = self._saved  # type: ignore[assignment]


def bare_consumer(bootstrap: str, topic: str, n: int, *, skip: int = 0) -> tuple[float, float]:
    """(wall, CPU) records/s of a bare kafka-python loop over records ``skip`` to ``skip+n``."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=f"bare-{uuid.uuid4().hex[:6]}",
                             max_poll_records=500)
    seen, start, cpu = 0, 0.0, 0.0
    while seen < skip + n:
        batch = consumer.poll(timeout_ms=1000)
        for records in batch.values():
            for r in records:
                seen += 1
                _ = r.value
        if seen >= skip and not start:
            start, cpu = time.perf_counter(), time.process_time()
    rates = (seen - skip) / (time.perf_counter() - start), (seen - skip) / (
        time.process_time() - cpu)
    consumer.close()
    return rates


def collector_rates(bootstrap: str, topic: str, redis_url: str, *, warmup: int,
                    embed: EmbedderSettings, consumer: ConsumerSettings,
                    batched: bool = True, decoder: RecordDecoder | None = None,
                    embedder: Embedder | None = None) -> tuple[float, float]:
    """Steady-state (wall, CPU) events/s of a collector: timed from the first poll past
    ``warmup`` records to the last record (records, not events: OTLP records hold many)."""
    client = redis.Redis.from_url(redis_url)
    store = cast(StateStore, RedisStore(client, key_prefix=f"bench-{uuid.uuid4().hex[:6]}:"))
    if embedder is None and embed.enabled:
        embedder = open_embedder(embed)
    pipeline = Pipeline(DriftSettings(), SignalExtractor(SignalSettings()), ROUTES, store,
                        embedder=embedder, embed_sampling_rate=embed.sampling_rate)
    bus = KafkaBus(KafkaSettings(bootstrap_servers=bootstrap),
                   group_id=f"bench-{uuid.uuid4().hex[:6]}", consumer=consumer)
    c = Collector(pipeline, store, CollectorMetrics(CollectorRegistry()), bus,
                  TopicSettings(outputs=topic, dead_letter=f"{topic}.dlq",
                                anomalies=f"{topic}.anomalies"),
                  checkpoint_every=2000, decoder=decoder)
    marks: list[tuple[float, float, int, int]] = []  # wall, cpu, records done, events done
    handle, events = c.handle, [0]
    original = isolation.process_batch

    def counted(*args: Any, **kwargs: Any) -> isolation.BatchOutcome:
        out = original(*args, batched=batched, **kwargs)
        events[0] += len(out.observed)
        return out

    def timed(batch: dict[Partition, list[Message]]) -> bool:
        done = handle(batch)
        last = max((m.offset for ms in batch.values() for m in ms), default=-1) + 1
        marks.append((time.perf_counter(), time.process_time(), last, events[0]))
        return done

    c.handle = timed  # type: ignore[method-assign]
    collector_service.process_batch = counted  # type: ignore[assignment]
    try:
        c.run(max_idle_s=2.0)
    finally:
        collector_service.process_batch = original
        client.close()
    first = next(m for m in marks if m[2] >= warmup)
    last = marks[-1]
    return ((last[3] - first[3]) / (last[0] - first[0]),
            (last[3] - first[3]) / (last[1] - first[1]))


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
               raw: list[bytes], warmup: int, per_message: int = 16,
               ) -> dict[str, tuple[float, float]]:
    """Steady-state (wall, CPU) events/s of the collector on the OutputEvents and on the same
    events as OTLP messages of each encoding (route as segment label in both)."""
    decoder = RecordDecoder(IngestSettings(segment_attributes=["route"]))
    off, consumer = EmbedderSettings(enabled=False), ConsumerSettings()
    rates = {"driftscope": collector_rates(bootstrap, _topic(bootstrap, raw), redis_url,
                                           warmup=warmup, embed=off, consumer=consumer,
                                           decoder=decoder)}
    for encoding in ("otlp_proto", "otlp_json"):
        topic = _topic(bootstrap, otlp_messages(events, encoding, per_message))
        rates[encoding] = collector_rates(bootstrap, topic, redis_url,
                                          warmup=warmup // per_message, embed=off,
                                          consumer=consumer, decoder=decoder)
    return rates


def encoder_rate(embedder: OnnxEmbedder, texts: Sequence[str], per_call: int) -> float:
    """Texts/s of ``embedder`` given ``per_call`` texts at a time."""
    start = time.perf_counter()
    for i in range(0, len(texts), per_call):
        embedder.encode(texts[i:i + per_call])
    return len(texts) / (time.perf_counter() - start)


def fidelity(fp32: OnnxEmbedder, int8: OnnxEmbedder, n: int) -> list[tuple[str, float, float,
                                                                            float, int]]:
    """Per kind of output (and ``all``): mean cosine, worst cosine, share >= 0.99, count."""
    pairs = corpus(n, seed=2026)
    texts = [t for _, t in pairs]
    cos = np.sum(fp32.encode(texts) * int8.encode(texts), axis=1)
    rows = []
    for kind in [*KINDS, "all"]:
        c = cos if kind == "all" else cos[[i for i, (k, _) in enumerate(pairs) if k == kind]]
        rows.append((kind, float(c.mean()), float(c.min()), float((c >= 0.99).mean()), c.size))
    return rows


class _Cached:
    """An embedder that encodes each distinct text once (the detection check's streams repeat
    their answers); the embeddings are the wrapped embedder's own."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self.inner, self.seen = inner, dict[str, npt.NDArray[np.float32]]()

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        new = sorted({t for t in texts if t not in self.seen})
        for t, v in zip(new, self.inner.encode(new), strict=True):
            self.seen[t] = v
        return np.stack([self.seen[t] for t in texts]) if texts else self.inner.encode([])


def detections(embedder: Embedder, shift: bool) -> list[tuple[str, str, int]]:
    """Embedding anomalies (segment, detector, event index) on the topic-switch stream."""
    drifts = (Drift(start=2000, route="billing", topic="crypto"),) if shift else ()
    events = list(generate_events(StreamSpec(n=2800, seed=3, drifts=drifts)))
    index = {e["event_id"]: i for i, e in enumerate(events)}
    pipeline = Pipeline(SMALL, SignalExtractor(SignalSettings()), ROUTES, MemoryStore(),
                        embedder=embedder, embed_sampling_rate=1.0)
    state = PartitionState(topic="detect", partition=0)
    parsed = [(i, OutputEvent.model_validate(e)) for i, e in enumerate(events)]
    out = []
    for i in range(0, len(parsed), 500):
        for r in pipeline.process(state, parsed[i:i + 500]):
            if r.anomaly.signal == "embedding":
                out.append((r.anomaly.key.segment, r.anomaly.detector,
                            index[r.anomaly.event_id]))
    return out


def _step(progress: Progress, what: str, fn: Callable[[], Any]) -> Any:
    task = progress.add_task(what, total=None)
    try:
        return fn()
    finally:
        progress.remove_task(task)
        progress.console.print(f"done: {what}", highlight=False)


def _row(label: str, rates: tuple[float, float], base: tuple[float, float],
         target: str = "") -> str:
    wall, cpu = rates
    return (f"| {label} | {wall:.0f} | {wall / base[0]:.2f} | {cpu:.0f} | {cpu / base[1]:.2f} |"
            f" {target} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=6000,
                    help="Records consumed untimed first (references fill, detectors calibrate).")
    ap.add_argument("--embed-events", type=int, default=1500)
    ap.add_argument("--corpus", type=int, default=900, help="Texts in the fidelity table.")
    ap.add_argument("--skip-otlp", action="store_true")
    ap.add_argument("--skip-embeddings", action="store_true")
    args = ap.parse_args()
    env = _stack_env()
    bootstrap = env.get("DRIFTSCOPE_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    redis_url = env.get("DRIFTSCOPE_REDIS_URL", "redis://127.0.0.1:16379/0")
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    out: list[str] = []
    with Progress(console=Console(stderr=True), transient=True) as progress:
        events = list(generate_events(StreamSpec(n=args.warmup + args.events, seed=7)))
        raw = [json.dumps(e).encode() for e in events]
        topic = _step(progress, "writing the scalar topic", lambda: _topic(bootstrap, raw))
        n, w = args.events, args.warmup
        bare = _step(progress, "bare consumer", lambda: bare_consumer(bootstrap, topic, n, skip=w))
        with _PythonCrc():
            py_crc = _step(progress, "bare consumer, pure-Python CRC",
                           lambda: bare_consumer(bootstrap, topic, n, skip=w))
        off = EmbedderSettings(enabled=False)
        paths: list[tuple[str, tuple[float, float], str]] = []
        old = ConsumerSettings(max_poll_records=500)
        paths.append(("collector, event by event (before), 500 a poll", _step(
            progress, "collector, event by event", lambda: collector_rates(
                bootstrap, topic, redis_url, warmup=w, embed=off, consumer=old,
                batched=False)), ""))
        sweep = [("batched, 500 a poll", old),
                 ("batched, 2000 a poll (default)", ConsumerSettings()),
                 ("batched, 2000 a poll, fetch_min_bytes 64 KiB / 100 ms",
                  ConsumerSettings(fetch_min_bytes=1 << 16, fetch_max_wait_ms=100))]
        for label, consumer in sweep:
            paths.append((f"collector, {label}", _step(
                progress, f"collector, {label}", lambda c=consumer: collector_rates(
                    bootstrap, topic, redis_url, warmup=w, embed=off, consumer=c)),
                ">= 0.80" if "default" in label else ""))
        out += ["", "Scalar path (steady state)", "",
                "| path | events/s | ratio | events/CPU-s | ratio | target |",
                "| --- | ---: | ---: | ---: | ---: | --- |",
                _row("bare kafka-python consumer (crc32c)", bare, bare),
                _row("bare kafka-python consumer, pure-Python CRC", py_crc, bare)]
        out += [_row(label, r, bare, t) for label, r, t in paths]
        before = paths[0][1]
        out += ["", "The same rows against the event-by-event collector and the pure-Python-CRC "
                "consumer:", "", "| path | x event by event (wall) | x pure-Python-CRC consumer "
                "(wall) |", "| --- | ---: | ---: |"]
        out += [f"| {label} | {r[0] / before[0]:.2f} | {r[0] / py_crc[0]:.2f} |"
                for label, r, _ in paths[1:]]
        if not args.skip_otlp:
            otlp = _step(progress, "OTLP input paths",
                         lambda: otlp_rates(bootstrap, redis_url, events, raw, w))
            base = otlp["driftscope"]
            out += ["", "Input paths (scalar signals, steady state)", "",
                    "| input | events/s | ratio | events/CPU-s | ratio | target (CPU ratio) |",
                    "| --- | ---: | ---: | ---: | ---: | --- |"]
            out += [_row("OutputEvent (1/message)" if k == "driftscope" else
                         f"{k} (16 spans/message)", r, base,
                         "" if k == "driftscope" else ">= 0.50") for k, r in otlp.items()]
        if not args.skip_embeddings:
            out += _embedding_tables(progress, args, bootstrap, redis_url)
    print("\n".join(out))


def _embedding_tables(progress: Progress, args: argparse.Namespace, bootstrap: str,
                      redis_url: str) -> list[str]:
    default = EmbedderSettings()
    int8 = open_embedder(default)  # exports, then quantises, on first use
    model_dir = default.model_dir or default_embedder_dir()
    fp32 = OnnxEmbedder(model_dir, batch_size=default.batch_size)
    texts = [t for _, t in corpus(args.embed_events, seed=7)]
    base = _step(progress, "fp32 encoder, one session, 500 a call (before)",
                 lambda: encoder_rate(OnnxEmbedder(model_dir, batch_size=500), texts, 500))
    events = list(generate_events(StreamSpec(n=args.embed_events, seed=8)))
    raw = [json.dumps({**e, "output": t}).encode() for e, t in zip(events, texts, strict=True)]
    topic = _step(progress, "writing the embedding topic", lambda: _topic(bootstrap, raw))
    full = EmbedderSettings(sampling_rate=1.0)
    rate = _step(progress, "collector, embeddings at rate 1.0 (int8)", lambda: collector_rates(
        bootstrap, topic, redis_url, warmup=0, embed=full, consumer=ConsumerSettings(),
        embedder=int8))
    fp32_sorted = _step(progress, "fp32 encoder, length-sorted, 8 a call", lambda: encoder_rate(
        fp32, texts, 500))
    int8_alone = _step(progress, "int8 encoder alone", lambda: encoder_rate(int8, texts, 500))
    rows = ["", f"Embedding path ({len(texts)} outputs of benchmarks/output_corpus.py, one "
            "thread)", "", "| path | texts/s | ratio | target |", "| --- | ---: | ---: | --- |",
            f"| fp32, one session, 500 texts a call (before) | {base:.0f} | 1.00 | |",
            f"| fp32, length-sorted, 8 a call | {fp32_sorted:.0f} | {fp32_sorted / base:.2f} | |",
            f"| int8 encoder alone (one a call) | {int8_alone:.0f} | {int8_alone / base:.2f} | |",
            f"| collector, embeddings at rate 1.0 (int8, end to end, CPU-s: "
            f"{rate[1]:.0f}/s) | {rate[0]:.0f} | {rate[0] / base:.2f} | >= 2.5 |"]
    fid = _step(progress, "fidelity", lambda: fidelity(fp32, int8, args.corpus))
    rows += ["", "int8 against fp32 (cosine of the two embeddings of each output)", "",
             "| kind | outputs | mean | worst | share >= 0.99 |",
             "| --- | ---: | ---: | ---: | ---: |"]
    rows += [f"| {k} | {c} | {m:.4f} | {lo:.4f} | {sh:.2f} |" for k, m, lo, sh, c in fid]
    rows += ["", "Detection (embedding anomalies: segment, detector, event; billing switches "
             "topic at event 2000)", "", "| stream | fp32 | int8 |", "| --- | --- | --- |"]
    for shift in (False, True):
        got = [_step(progress, f"detection ({name}, shift={shift})",
                     lambda e=e, shift=shift: detections(_Cached(e), shift))
               for name, e in (("fp32", fp32), ("int8", int8))]
        label = "topic switch on billing" if shift else "no change"
        rows.append(f"| {label} | {_fmt(got[0])} | {_fmt(got[1])} |")
    return rows


def _fmt(found: list[tuple[str, str, int]]) -> str:
    return "none" if not found else "; ".join(f"{s} {d} @{i}" for s, d, i in found)


if __name__ == "__main__":
    main()
