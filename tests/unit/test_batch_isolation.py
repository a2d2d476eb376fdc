"""Poison isolation on the collector's per-message path
(:mod:`driftscope_llm.services.collector.batch`).

The batch that stopped the collector on ec31e46: 200 valid events, then a message that fails.
Here the failure comes from every stage in turn (decoding, measuring, embedding, observing); the
valid events must be observed exactly once, the failing one must come back as a reason with its
raw bytes, and an infrastructure error must propagate *without* advancing past its message.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest

from driftscope_llm.services.collector.batch import (
    MAX_DEAD_LETTER_RAW,
    Rejected,
    dead_letter_for,
    process_batch,
)
from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from driftscope_llm.services.config import SegmentSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.errors import StoreError
from driftscope_llm.services.schemas import DeadLetter, OutputEvent
from driftscope_llm.services.store import MemoryStore

SMALL = DriftSettings(reference_size=400, min_reference_values=100, window_size=200,
                      min_window=50, test_every=25, cooldown_events=200)
POISON_TEXT = "this output breaks a stage"


class _BrittleExtractor(SignalExtractor):
    """A signal extractor with a bug that one output triggers."""

    def extract(self, event: OutputEvent) -> dict[str, float | bool | str | None]:
        if event.output == POISON_TEXT:
            raise KeyError("bug in a signal")
        return super().extract(event)


class _BrittleEmbedder:
    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if POISON_TEXT in texts:
            raise IndexError("index out of range in self")
        return np.ones((len(texts), 4), dtype=np.float32)


class _FlakyStore(MemoryStore):
    """Redis going away on the n-th reference lookup."""

    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.calls, self.fail_on = 0, fail_on

    def previous_reference(self, model: str, version: str,
                           segment: str) -> dict[str, object] | None:
        self.calls += 1
        if self.calls == self.fail_on:
            raise StoreError("connection refused")
        return super().previous_reference(model, version, segment)


def _records(n: int = 200, *, at: int = 0) -> list[tuple[int, bytes | None]]:
    events = list(generate_events(StreamSpec(n=n, seed=11)))
    return [(at + i, json.dumps(e).encode()) for i, e in enumerate(events)]


def _with_poison(poison: bytes, position: int = 200) -> list[tuple[int, bytes | None]]:
    records = _records()
    records.insert(position, (-1, poison))
    return [(i, raw) for i, (_, raw) in enumerate(records)]  # offsets in order again


def _clean_totals() -> dict[str, int]:
    """Per-stream totals after the 200 valid events alone, without any poison."""
    state = PartitionState(topic="t", partition=0)
    process_batch(_pipeline(), state, _records(), max_bytes=1_000_000)
    return state.totals


def _pipeline(store: MemoryStore | None = None, *, embed: bool = False) -> Pipeline:
    return Pipeline(SMALL, _BrittleExtractor(SignalSettings()), SegmentSettings(label="route"),
                    store or MemoryStore(), embedder=_BrittleEmbedder() if embed else None,
                    embed_sampling_rate=1.0)


def _poison_event() -> bytes:
    event = next(generate_events(StreamSpec(n=1, seed=12, prefix="poison")))
    return json.dumps({**event, "output": POISON_TEXT}).encode()


@pytest.mark.parametrize("position", [0, 100, 200])
@pytest.mark.parametrize(("poison", "reason", "embed"), [
    (b'{"metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}", "too_deep", False),
    (b'{"latency_ms": ' + b"9" * 5000 + b"}", "too_large", False),
    (json.dumps({"event_id": "x", "ts": "2026-01-01T00:00:00Z", "model": "m",
                 "output": "\ud800"}).encode(), "invalid_text", False),
    (_poison_event(), "processing_failed", False),  # the signal extractor raises
    (_poison_event(), "processing_failed", True),  # the embedder raises
])
def test_a_poison_message_costs_only_itself(poison: bytes, reason: str, embed: bool,
                                            position: int) -> None:
    state = PartitionState(topic="t", partition=0)
    records = _with_poison(poison, position)
    out = process_batch(_pipeline(embed=embed), state, records, max_bytes=1_000_000)
    assert [(r.offset, r.reason, r.raw) for r in out.rejected] == [(position, reason, poison)]
    assert len(out.observed) == 200
    assert state.totals == _clean_totals()  # every valid event counted, once
    assert state.next_offset == 201
    if embed:
        assert out.embedded == 200


def test_redelivery_of_a_handled_batch_observes_nothing_twice() -> None:
    state = PartitionState(topic="t", partition=0)
    pipeline = _pipeline()
    records = _with_poison(_poison_event(), 50)
    process_batch(pipeline, state, records[:120], max_bytes=1_000_000)
    again = process_batch(pipeline, state, records, max_bytes=1_000_000)
    assert [r.offset for r in again.rejected] == []  # offset 50 was handled before
    assert state.totals == _clean_totals() and state.next_offset == 201


def test_a_failing_metrics_hook_dead_letters_the_message_not_the_batch() -> None:
    def hook(ev: OutputEvent) -> None:
        if ev.event_id.endswith("-0000007"):
            raise ZeroDivisionError("bad label")

    state = PartitionState(topic="t", partition=0)
    out = process_batch(_pipeline(), state, _records(20), max_bytes=1_000_000, on_valid=hook)
    assert [(r.offset, r.reason) for r in out.rejected] == [(7, "processing_failed")]
    assert "ZeroDivisionError while measuring" in out.rejected[0].detail
    assert len(out.observed) == 19 and 7 not in {off for off, _ in out.observed}


def test_an_infrastructure_error_propagates_without_moving_past_its_message() -> None:
    # a fresh stream's first event looks up its previous-version reference: the store fails
    state = PartitionState(topic="t", partition=0)
    with pytest.raises(StoreError):
        process_batch(_pipeline(_FlakyStore(fail_on=1)), state, _records(10), max_bytes=1_000_000)
    assert state.next_offset == 0  # the failed event will be read again, not dead-lettered


def test_dead_letters_fit_one_kafka_request_and_identify_the_whole_message() -> None:
    raw = b"x" * (MAX_DEAD_LETTER_RAW + 10)
    letter = dead_letter_for(Rejected(7, "too_large", "long", raw), topic="t", partition=3,
                             received_at=datetime.now(UTC))
    assert letter.raw_truncated and letter.raw_bytes == len(raw)
    assert base64.b64decode(letter.raw_b64) == raw[:MAX_DEAD_LETTER_RAW]
    assert letter.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert len(letter.model_dump_json()) < 1_000_000
    small = dead_letter_for(Rejected(8, "not_json", "x", b"{"), topic="t", partition=3,
                            received_at=datetime.now(UTC))
    assert not small.raw_truncated and DeadLetter.model_validate_json(
        small.model_dump_json()).raw_b64 == base64.b64encode(b"{").decode()
