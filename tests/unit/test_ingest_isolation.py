"""Records that hold many events (OTLP exports) through the collector's isolated batch path:
each event observed once at its record's offset, one event's failure costing that event alone,
redelivery of a record observing nothing twice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.collector.batch import process_batch
from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from driftscope_llm.services.config import SegmentSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.ingest import RecordDecoder
from driftscope_llm.services.store import MemoryStore
from tests.fixtures.ingest.spans import export_request, genai_span, http_span

POISON = "this output breaks the embedder"


class _BrittleEmbedder:
    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if POISON in texts:
            raise IndexError("index out of range in self")
        return np.ones((len(texts), 4), dtype=np.float32)


def _pipeline() -> Pipeline:
    return Pipeline(DriftSettings(), SignalExtractor(SignalSettings()), SegmentSettings(),
                    MemoryStore(), embedder=_BrittleEmbedder(), embed_sampling_rate=1.0)


def _records(poison_at: int | None = None) -> tuple[list[tuple[int, bytes | None]], int]:
    events = list(generate_events(StreamSpec(n=40, seed=3)))
    if poison_at is not None:
        events[poison_at] = {**events[poison_at], "output": POISON}
    records: list[tuple[int, bytes | None]] = []
    for offset, i in enumerate(range(0, len(events), 8)):
        spans = [genai_span(e) for e in events[i:i + 8]] + [http_span(i)]
        records.append((offset, export_request(spans).SerializeToString()))
    return records, len(events)


def _decode(raw: bytes):  # type: ignore[no-untyped-def]
    return RecordDecoder().decode("t", raw)


def _observed(state: PartitionState) -> int:
    return sum(n for sid, n in state.totals.items() if sid.endswith("|all"))


def test_every_span_of_every_record_is_observed_once() -> None:
    records, n = _records()
    state = PartitionState(topic="t", partition=0)
    out = process_batch(_pipeline(), state, records, max_bytes=1_000_000, decode=_decode)
    assert len(out.observed) == n and not out.rejected
    assert sorted({off for off, _ in out.observed}) == [off for off, _ in records]
    assert _observed(state) == n and state.next_offset == len(records)
    again = process_batch(_pipeline(), state, records, max_bytes=1_000_000, decode=_decode)
    assert not again.observed and _observed(state) == n  # a redelivered batch: nothing twice


def test_one_span_failing_costs_that_span_alone() -> None:
    records, n = _records(poison_at=11)  # the fourth span of the second record
    state = PartitionState(topic="t", partition=0)
    out = process_batch(_pipeline(), state, records, max_bytes=1_000_000, decode=_decode)
    assert len(out.observed) == n - 1
    [rejected] = out.rejected
    assert rejected.offset == 1 and rejected.reason == "processing_failed"
    assert rejected.raw == records[1][1]  # the whole record's bytes, for the dead letter
    assert sum(1 for off, _ in out.observed if off == 1) == 7  # its other spans observed
