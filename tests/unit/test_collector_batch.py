"""The batched hot path equals the event-by-event path: every anomaly, incident and state.

The collector observes a poll's events in chunks (``Pipeline.observe_chunk``: one
``observe_batch`` per stream), the reference path one event at a time (``batched=False``). Both
run here over the same streams — a rollout whose new version starts while the old one is still
collecting its reference, a refusal spike on one route, a topic change in the embeddings, a new
model mid-stream, poison messages — cut into polls of many sizes, and everything either path
leaves behind is compared: the raised anomalies (with their incidents), each monitor's
``state_dict``, the per-stream totals, the exemplar rings, the stored references and incidents.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from benchmarks.scenarios import Change, generate, make_world
from driftscope_llm.services.collector.batch import process_batch
from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline, RaisedAnomaly
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.config import SegmentSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.store import MemoryStore

SMALL = DriftSettings(reference_size=400, min_reference_values=100, window_size=200,
                      min_window=50, test_every=25, cooldown_events=200)
ROUTES = SegmentSettings(label="route", allowed=["billing", "shipping", "account", "tech"])
POLL_SIZES = (1, 7, 500, 5000)


class _HashEmbedder:
    """A deterministic stand-in for the ONNX embedder (pure-logic test): each distinct text
    gets its own unit vector, seeded by the text's hash, near one of two directions chosen by
    whether it talks about crypto (so the planted topic change moves the embeddings)."""

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.empty((len(texts), 384), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
            v = np.random.default_rng(seed).normal(size=384)
            v[0 if "coin" in text or "NFT" in text or "wallet" in text else 1] += 12.0
            out[i] = v / np.linalg.norm(v)
        return out


def _pipeline(*, embed: bool = False) -> Pipeline:
    return Pipeline(SMALL, SignalExtractor(SignalSettings()), ROUTES, MemoryStore(),
                    embedder=_HashEmbedder() if embed else None, embed_sampling_rate=0.5)


def _traffic() -> list[dict[str, Any]]:
    """v1 for 300 events (short of its 400-event reference), then v2 with a refusal spike on
    billing and a topic change on shipping; a second model appears halfway through."""
    v1 = list(generate_events(StreamSpec(n=300, seed=1, model_version="v1")))
    v2 = list(generate_events(StreamSpec(
        n=3200, seed=2, model_version="v2", drifts=(
            Drift(start=1600, route="billing", refusal_rate=0.5),
            Drift(start=2000, route="shipping", topic="crypto")))))
    other = list(generate_events(StreamSpec(n=900, seed=3, model="faq-bot", prefix="faq")))
    events = v1 + v2[:1500] + [e for pair in zip(v2[1500:2400], other, strict=False)
                               for e in pair] + v2[2400:]
    return events


def _snapshot(pipeline: Pipeline, state: PartitionState,
              raised: Sequence[RaisedAnomaly]) -> dict[str, Any]:
    store = pipeline.store
    assert isinstance(store, MemoryStore)
    return {
        "raised": [(r.to_dict(), r.anomaly.to_dict(), r.incident.model_dump(mode="json"))
                   for r in raised],
        "monitors": {sid: m.state_dict() for sid, m in state.monitors.items()},
        "totals": dict(state.totals),
        "rings": {sid: list(ring.items()) for sid, ring in state.recent.items()},
        "next_offset": state.next_offset,
        "checkpoint": state.to_checkpoint(
            __import__("datetime").datetime(2026, 1, 1)).model_dump(mode="json"),
        "incidents": sorted(i.model_dump_json() for i in store.list_incidents()),
        "references": json.dumps(sorted((list(k), v) for k, v in store._references.items()),
                                 default=str),
        "versions": dict(store._versions),
    }


def _run_process(events: list[dict[str, Any]], poll: int, *, batched: bool,
                 embed: bool = False) -> tuple[dict[str, Any], int]:
    pipeline, state = _pipeline(embed=embed), PartitionState(topic="t", partition=0)
    parsed = [(i, OutputEvent.model_validate(e)) for i, e in enumerate(events)]
    raised: list[RaisedAnomaly] = []
    for i in range(0, len(parsed), poll):
        raised += pipeline.process(state, parsed[i:i + poll], batched=batched)
    return _snapshot(pipeline, state, raised), len(raised)


@functools.cache
def _reference(embed: bool) -> dict[str, Any]:
    snapshot, n = _run_process(_traffic(), 1, batched=False, embed=embed)
    assert n >= 2, "the planted changes must raise anomalies for the comparison to mean much"
    return snapshot


@pytest.mark.parametrize("poll", POLL_SIZES)
def test_batched_process_equals_one_by_one(poll: int) -> None:
    batched, _ = _run_process(_traffic(), poll, batched=True)
    assert batched == _reference(False)


@pytest.mark.parametrize("poll", (33, 1000))
def test_batched_process_equals_one_by_one_with_embeddings(poll: int) -> None:
    reference = _reference(True)
    kinds = {r[0]["signal"] for r in reference["raised"]}
    assert "embedding" in kinds and "refusal" in kinds, kinds
    batched, _ = _run_process(_traffic(), poll, batched=True, embed=True)
    assert batched == reference


@pytest.mark.parametrize("poll", (50, 777))
def test_handle_batch_equals_one_by_one_with_poison_messages(poll: int) -> None:
    raw = [json.dumps(e).encode() for e in _traffic()]
    for at in (5, 401, 2222, 3000):  # not JSON, a missing field, a non-finite logprob, deep
        raw.insert(at, [b"{not json", b'{"event_id": "x"}',
                        b'{"event_id": "n", "ts": "2026-01-01T00:00:00Z", "model": "m", '
                        b'"output": "o", "token_logprobs": [NaN]}',
                        b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}"][(at % 4)])
    records = list(enumerate(raw))

    def run(batched: bool) -> tuple[dict[str, Any], list[tuple[int, str]], int]:
        pipeline, state = _pipeline(embed=True), PartitionState(topic="t", partition=0)
        raised: list[RaisedAnomaly] = []
        rejected: list[tuple[int, str]] = []
        observed = 0
        for i in range(0, len(records), poll):
            out = process_batch(pipeline, state, records[i:i + poll], max_bytes=1_000_000,
                               batched=batched)
            raised += out.raised
            rejected += [(r.offset, r.reason) for r in out.rejected]
            observed += len(out.observed)
        return _snapshot(pipeline, state, raised), rejected, observed

    one_by_one = run(False)
    assert len(one_by_one[1]) == 4 and one_by_one[2] == len(records) - 4
    assert run(True) == one_by_one


def _benchmark_items() -> list[tuple[int, OutputEvent, Any]]:
    """The drift benchmark's streams (every signal, embeddings on a quarter of the events, then
    half), with an abrupt confidence drop and a new topic, as given values."""
    world = make_world(3, dim=32)
    rows = generate(world, 2500, seed=5, change=Change("confidence", at=1200, size=-1.0))
    rows += [replace(o, event_id=f"n{o.event_id}", ts=o.ts + 2500) for o in generate(
        world, 2500, seed=6, change=Change("new_topic", at=600, size=0.4), embed_rate=0.5)]
    base = OutputEvent.model_validate({"event_id": "x", "ts": "2026-01-01T00:00:00Z",
                                       "model": "m", "output": "o",
                                       "segment": {"route": "billing"}})
    return [(i, base.model_copy(update={"event_id": o.event_id}), o.values)
            for i, o in enumerate(rows)]


@functools.cache
def _run_values(batched: bool, poll: int) -> dict[str, Any]:
    items = _benchmark_items()
    pipeline, state = _pipeline(), PartitionState(topic="t", partition=0)
    raised: list[RaisedAnomaly] = []
    for i in range(0, len(items), poll):
        raised += pipeline.process_values(state, items[i:i + poll], batched=batched)
    return _snapshot(pipeline, state, raised)


@pytest.mark.parametrize("poll", (1, 250, 4000))
def test_batched_values_equal_one_by_one_on_benchmark_streams(poll: int) -> None:
    reference = _run_values(False, 1)
    assert {r[0]["signal"] for r in reference["raised"]} & {"logprob_mean", "embedding"}
    assert _run_values(True, poll) == reference
