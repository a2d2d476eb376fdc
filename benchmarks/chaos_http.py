"""The chaos suite's HTTP probes: ``driftscope ingest`` as a process on the private stack, under
hostile and unlucky clients (``benchmarks/chaos.py`` runs them and prints the table).

Spans are the synthetic generator's events as GenAI spans (``tests/fixtures/ingest/spans.py``),
each with a distinct trace/span id, so what reached the topic is checked span by span: **lost**
is a span answered 200 and absent from the topic, **duplicated** a span on it more than once.
The receiver runs with 3-second read deadlines (``header_timeout_s``, ``body_timeout_s``; the
defaults are 10 and 30) so that the slow-client probe ends in seconds.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer

from benchmarks.chaos_probes import REPO, Chaos
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from tests.collector_harness import free_port
from tests.fixtures.ingest.spans import export_request, genai_span, ids_for, to_otlp_json
from tests.stack import CLI_MODULE

if TYPE_CHECKING:
    from benchmarks.chaos import Row

__all__ = ["HTTP_PROBES"]

DEADLINE_S = 3.0
_serial = count()


class Ingest:
    """``driftscope ingest`` as a subprocess producing to ``topic`` on the private broker."""

    def __init__(self, chaos: Chaos, topic: str) -> None:
        self.port = free_port()
        env = {**os.environ,
               "DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": chaos.bootstrap,
               "DRIFTSCOPE_TOPICS__OUTPUTS": topic,
               "DRIFTSCOPE_TOPICS__DEAD_LETTER": f"{topic}.dlq",
               "DRIFTSCOPE_METRICS__PORT": str(free_port()),
               "DRIFTSCOPE_RECEIVER__HEADER_TIMEOUT_S": str(DEADLINE_S),
               "DRIFTSCOPE_RECEIVER__BODY_TIMEOUT_S": str(DEADLINE_S),
               "DRIFTSCOPE_RECEIVER__RETRY_AFTER_S": "1",
               "PYTHONWARNINGS": "ignore::DeprecationWarning"}
        self.log = chaos.work / f"ingest-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", CLI_MODULE, "ingest", "--port", str(self.port)],
                env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        chaos.procs.append(self.proc)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ingest exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("ingest never listened")

    def threads(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        return -1

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def spans(n: int) -> tuple[list[dict[str, Any]], list[str]]:
    """``n`` fresh events and the event ids the receiver will give their spans."""
    events = list(generate_events(StreamSpec(n=n, seed=next(_serial),
                                             prefix=f"h{next(_serial)}")))
    ids = []
    for e in events:
        trace, span = ids_for(e["event_id"])
        ids.append(f"{trace.hex()}:{span.hex()}")
    return events, ids


def proto_body(events: list[dict[str, Any]]) -> bytes:
    return bytes(export_request([genai_span(e) for e in events]).SerializeToString())


def on_topic(bootstrap: str, topic: str) -> list[tuple[int, bytes]]:
    """Every record on ``topic`` (one partition in the private stack), as (offset, value)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    records = [(m.offset, m.value) for m in consumer]
    consumer.close()
    return records


def collector_counts(records: list[tuple[int, bytes]]) -> Counter[str]:
    """How many times the collector's own batch step (collector/batch.py, with its repeat
    detection, collector/dedupe.py) counts each event id of ``records``, in topic order."""
    from driftscope_llm.services.collector.batch import process_batch
    from driftscope_llm.services.collector.build import build_pipeline
    from driftscope_llm.services.collector.pipeline import PartitionState
    from driftscope_llm.services.config import CollectorSettings
    from driftscope_llm.services.store.memory import MemoryStore

    s = CollectorSettings()
    pipeline = build_pipeline(s.drift, s.signals, s.segments,
                              s.embedder.model_copy(update={"enabled": False}), MemoryStore())
    state = PartitionState(topic="chaos", partition=0)
    out = process_batch(pipeline, state, records, max_bytes=s.max_event_bytes)
    return Counter(event.event_id for _, event in out.observed)


def account(row: Row, acked: list[str], records: list[tuple[int, bytes]]) -> None:
    """Lost: acknowledged and never on the topic. Duplicated: counted more than once by the
    collector. Copies on the topic that the collector counts once are noted, not failed: an
    at-least-once topic may hold them (a 503'd batch retried after its first copy landed)."""
    topic_ids = Counter(json.loads(v)["event_id"] for _, v in records)
    row.produced = len(acked)
    row.counted = sum(1 for i in set(acked) if topic_ids[i])
    row.lost = len(set(acked)) - row.counted
    copies = sum(n - 1 for n in topic_ids.values() if n > 1)
    counted = collector_counts(records)
    row.duplicated = sum(n - 1 for n in counted.values() if n > 1)
    if copies:
        row.notes.append(f"{copies:,} repeated copies on the topic, each counted once by the "
                         "collector (driftscope_events_duplicate_total)")


def post(port: int, body: bytes, ctype: str = "application/x-protobuf",
         timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": ctype})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# probes ----------------------------------------------------------------------------------------

def http_burst(chaos: Chaos, row: Row) -> None:
    topic = chaos.topic("http-burst")
    rx = Ingest(chaos, topic)
    events, ids = spans(100)
    start = threading.Barrier(100)

    def one(i: int) -> int | None:
        start.wait()
        try:
            return post(rx.port, proto_body([events[i]]))[0]
        except OSError:
            return None

    with ThreadPoolExecutor(100) as pool:
        codes = list(pool.map(one, range(100)))
    rx.stop()
    row.resets = sum(1 for c in codes if c is None)
    acked = [ids[i] for i, c in enumerate(codes) if c == 200]
    account(row, acked, on_topic(chaos.bootstrap, topic))
    row.notes.append(f"100 simultaneous connections: {Counter(codes)}")


def http_slowloris(chaos: Chaos, row: Row) -> None:
    topic = chaos.topic("http-slow")
    rx = Ingest(chaos, topic)
    n = 200 if chaos.reduced else 500
    before = rx.threads()
    head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", rx.port), timeout=60)
        s.sendall(head + (b"Content-Length: 1000\r\n\r\n\x0a\x0a" if i % 5 else b"X-Slow: "))
        socks.append(s)
    time.sleep(1)
    peak = rx.threads()
    answers = Counter()
    for s in socks:
        try:
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            answers[data[:12].decode(errors="replace") or "closed"] += 1
        except OSError:
            answers["reset"] += 1
        finally:
            s.close()
    deadline = time.monotonic() + 10
    while rx.threads() > before and time.monotonic() < deadline:
        time.sleep(0.2)
    after = rx.threads()
    rx.stop()
    row.resets = n - answers["HTTP/1.1 408"]  # reset, or closed without an answer
    if after > before:
        row.error = f"receiver threads {before} before, {after} after the slow clients left"
    row.notes.append(f"{n} slow clients (4/5 partial bodies, 1/5 partial headers): {dict(answers)};"
                     f" receiver threads {before} -> peak {peak} -> {after}")


def http_bad_spans(chaos: Chaos, row: Row) -> None:
    topic = chaos.topic("http-bad")
    rx = Ingest(chaos, topic)
    events, ids = spans(5)
    events[1]["output"] = "x" * 1_200_000
    data = json.loads(to_otlp_json(export_request([genai_span(e) for e in events])))
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][3]["endTimeUnixNano"] = 10**24
    body = json.dumps(data).encode()
    statuses = []
    for _ in range(3):  # an exporter retries 503 and 429, nothing else
        status, _, reply = post(rx.port, body, "application/json")
        statuses.append(status)
        if status not in (429, 503):
            break
        time.sleep(1)
    rx.stop()
    good = [ids[i] for i in (0, 2, 4)]
    account(row, good if statuses[-1] == 200 else [], on_topic(chaos.bootstrap, topic))
    row.lost += 0 if statuses[-1] == 200 else len(good)
    rejected = json.loads(reply).get("partialSuccess", {}).get("rejectedSpans") \
        if statuses[-1] == 200 else None
    row.dead_lettered = sum(on_topic_letters(chaos.bootstrap, f"{topic}.dlq").values())
    if rejected != "2":
        row.error = f"answers {statuses}, rejected spans {rejected} (want 200 and 2)"
    row.notes.append(f"3 good spans, one of 1.2 MB, one ending at 1e24 ns: answers {statuses}, "
                     f"rejected {rejected}")


def on_topic_letters(bootstrap: str, topic: str) -> Counter[str]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    reasons = Counter(json.loads(m.value)["reason"] for m in consumer)
    consumer.close()
    return reasons


def http_kafka_stopped(chaos: Chaos, row: Row) -> None:
    topic = chaos.topic("http-load")
    rx = Ingest(chaos, topic)
    clients, per_request = 50, 10
    run_s = 30.0 if chaos.reduced else 75.0
    pause = 15.0 if chaos.reduced else 35.0  # past produce_timeout_s (10 s): 503s
    acked: list[str] = []
    codes: Counter[Any] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + run_s

    def client(_: int) -> None:
        while time.monotonic() < stop_at:
            events, ids = spans(per_request)
            body = proto_body(events)
            while True:  # as an OTLP exporter: retry 429/503 after Retry-After, keep the data
                try:
                    status, headers, _ = post(rx.port, body, timeout=60)
                except OSError:
                    status, headers = -1, {}
                with lock:
                    codes[status] += 1
                if status == 200:
                    with lock:
                        acked.extend(ids)
                    break
                if status not in (429, 503, -1) or time.monotonic() > stop_at + 120:
                    break
                time.sleep(min(2.0, float(headers.get("Retry-After", 1))))

    pid = chaos.pid("kafka")
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, i) for i in range(clients)]
        time.sleep(run_s / 4)
        os.kill(pid, signal.SIGSTOP)
        chaos.say(f"    broker paused {pause:.0f}s under load")
        time.sleep(pause)
        os.kill(pid, signal.SIGCONT)
        for f in futures:
            f.result()
    rx.stop()
    account(row, acked, on_topic(chaos.bootstrap, topic))
    row.resets = codes[-1]
    row.notes.append(f"{clients} clients x {per_request} spans a request for {run_s:.0f}s, "
                     f"broker paused {pause:.0f}s: answers {dict(codes)}")


HTTP_PROBES: dict[str, Callable[[Chaos, Row], None]] = {
    "http_burst": http_burst,
    "http_slowloris": http_slowloris,
    "http_bad_spans": http_bad_spans,
    "http_kafka_stopped": http_kafka_stopped,
}
