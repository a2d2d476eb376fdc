"""Embedded mode: run the collector's pipeline over a JSONL file, no services needed.

Each line is one record in any line-based input format (:mod:`driftscope_llm.services.ingest`):
an OutputEvent, an OpenAI chat completion (bare or wrapped), or an OTLP JSON
``ExportTraceServiceRequest`` as the OpenTelemetry Collector's Kafka exporter (``otlp_json``) or
file exporter writes it — detected per line, or named with ``fmt``. A line's number stands in
for the Kafka offset; every event a line holds is observed at that offset. Invalid items are
counted by reason and reported (with line numbers), never silently dropped; spans that are not
generations are counted as skipped.

A line's arrival (the moment it is read) is its observed time: versions and references are
ordered by the order of the lines, never by the events' ``ts``. A ``ts`` later than the wall
clock, or more than a day before the latest plausible ``ts`` of the file, is counted in
``ReplayStats.clock_skew`` and not trusted (:mod:`~driftscope_llm.services.collector.clock`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from driftscope_llm.services.collector.batch import process_batch
from driftscope_llm.services.collector.clock import ArrivalClock
from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline, RaisedAnomaly
from driftscope_llm.services.ingest.decode import RecordDecoder
from driftscope_llm.services.ingest.results import Decoded
from driftscope_llm.services.ingest.settings import IngestSettings, InputFormat

__all__ = ["ReplayStats", "replay_file"]


@dataclass
class ReplayStats:
    lines: int = 0
    valid: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    first_invalid: list[tuple[int, str]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    formats: Counter[str] = field(default_factory=Counter)
    clock_skew: Counter[str] = field(default_factory=Counter)  # "behind"/"ahead" -> events
    duplicates: int = 0  # repeated lines of an event already counted (collector/dedupe.py)


def replay_file(
    path: Path,
    pipeline: Pipeline,
    stats: ReplayStats,
    *,
    batch_size: int = 256,
    max_event_bytes: int = 1_000_000,
    on_progress: Callable[[int], None] | None = None,
    fmt: InputFormat = "auto",
    ingest: IngestSettings | None = None,
    arrival: Callable[[], float] | None = None,
) -> Iterator[RaisedAnomaly]:
    """Yield anomalies in the order raised while replaying ``path`` through ``pipeline``.

    Lines go through the collector's own per-message isolation
    (:func:`~driftscope_llm.services.collector.batch.process_batch`): a line that fails to
    parse, or whose handling fails later, is counted by reason and the replay moves on.
    ``arrival`` gives each line its observed time (default: the wall clock, strictly
    increasing from line to line).
    """
    if fmt == "otlp_proto":
        raise ValueError("otlp_proto is not line-based; replay OTLP as JSON lines (otlp_json)")
    decoder = RecordDecoder(ingest, max_event_bytes=max_event_bytes)

    def decode(raw: bytes) -> Decoded:
        decoded = decoder.decode_as(fmt, raw)
        stats.skipped.update(decoded.skipped)
        stats.formats[decoded.format] += 1
        return decoded

    state = PartitionState(topic=str(path), partition=0, follow_claims=True)
    clock = arrival if arrival is not None else ArrivalClock()
    batch: list[tuple[int, bytes | None]] = []
    observed: dict[int, float] = {}
    with Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            stats.lines += 1
            line = raw.strip()
            if not line:
                continue
            batch.append((lineno, line))
            observed[lineno] = clock()
            if len(batch) >= batch_size:
                yield from _flush(pipeline, state, batch, stats, on_progress, max_event_bytes,
                                  decode, observed)
                batch, observed = [], {}
        yield from _flush(pipeline, state, batch, stats, on_progress, max_event_bytes, decode,
                          observed)


def _flush(
    pipeline: Pipeline,
    state: PartitionState,
    batch: list[tuple[int, bytes | None]],
    stats: ReplayStats,
    on_progress: Callable[[int], None] | None,
    max_event_bytes: int,
    decode: Callable[[bytes], Decoded] | None = None,
    observed: dict[int, float] | None = None,
) -> Iterator[RaisedAnomaly]:
    if not batch:
        return
    out = process_batch(pipeline, state, batch, max_bytes=max_event_bytes, decode=decode,
                        observed=observed)
    stats.clock_skew.update(out.skewed)
    stats.duplicates += len(out.duplicates)
    for rejected in out.rejected:
        stats.invalid[rejected.reason] += 1
        if len(stats.first_invalid) < 20:
            stats.first_invalid.append((rejected.offset, f"{rejected.reason}: {rejected.detail}"))
    stats.valid += len(out.observed)
    yield from out.raised
    if on_progress is not None:
        on_progress(len(out.observed))
