"""Fuzz the collector's per-message path (issue 19): arbitrary bytes, mutated events and known
poison shapes through :func:`~driftscope_llm.services.collector.batch.process_batch` with a
real pipeline on the in-memory store.

Invariants, for every batch: no exception escapes; every message ends either observed or
rejected with a known reason, never both, never neither; an observed message is exactly what its
bytes say (same event as a plain ``json.loads`` would give, for the fields the monitors read);
and the partition's checkpoint serialises afterwards (on ec31e46 a lone surrogate was accepted
and only the checkpoint write failed, stopping the collector).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftscope_llm.services.collector.batch import process_batch
from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from driftscope_llm.services.config import SegmentSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.schemas import INVALID_REASONS
from driftscope_llm.services.store import MemoryStore
from driftscope_llm.services.store.model import Checkpoint

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SMALL = DriftSettings(reference_size=60, min_reference_values=20, window_size=30, min_window=10,
                      test_every=10, cooldown_events=30)
VALID = [json.dumps(e).encode() for e in generate_events(StreamSpec(n=40, seed=21))]

text = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(
    ["\ud800", "\udfff", "\x1b", "\x00", "|", ":", "%", "[", "{", "\\"]), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**80, 10**80) | st.floats(allow_nan=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8)
FIELDS = ["event_id", "ts", "model", "output", "model_version", "prompt", "segment",
          "token_logprobs", "top_logprobs", "confidence", "latency_ms", "metadata", "extra"]
SHAPES = [
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 70 + b"1" + b"}" * 70,
    b"9" * 5000,
    b"1e999",
    b"-1E+400",
    b"NaN",
    b'"\\ud800"',
    b"\xed\xa0\x80",
    b"\xff\xfe\x00",
    b"",
]


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return draw(st.sampled_from(SHAPES))
    event: dict[str, Any] = json.loads(draw(st.sampled_from(VALID)))
    if kind == 2:
        event[draw(st.sampled_from(FIELDS))] = draw(json_values)
    elif kind == 3:
        event[draw(st.sampled_from(["model", "output", "model_version", "prompt"]))] = draw(text)
        if draw(st.booleans()):
            event["segment"] = {draw(text): draw(text)}
    raw = json.dumps(event).encode()
    if kind == 4:
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.sampled_from(SHAPES)) + raw[cut:]
    return raw


def _pipeline() -> Pipeline:
    return Pipeline(SMALL, SignalExtractor(SignalSettings()), SegmentSettings(label="route"),
                    MemoryStore())


@FUZZ
@given(batch=st.lists(messages(), min_size=1, max_size=12), valid_every=st.integers(1, 4))
def test_every_message_is_observed_or_dead_lettered_and_nothing_escapes(
        batch: list[bytes], valid_every: int) -> None:
    records: list[bytes] = []
    for i, raw in enumerate(batch):  # interleave known-valid events with the fuzzed ones
        if i % valid_every == 0:
            records.append(VALID[i % len(VALID)])
        records.append(raw)
    state = PartitionState(topic="t", partition=0)
    out = process_batch(_pipeline(), state, list(enumerate(records)), max_bytes=100_000)

    observed = {off for off, _ in out.observed}
    rejected = {r.offset for r in out.rejected}
    repeated = set(out.duplicates)  # the same event again (collector/dedupe.py): counted once
    assert observed.isdisjoint(rejected) and repeated.isdisjoint(observed | rejected)
    assert observed | rejected | repeated == set(range(len(records)))
    for off in repeated:  # only a message delivered before, byte for byte
        assert records[off] in {records[o] for o in observed if o < off}
    assert all(r.reason in INVALID_REASONS and r.raw == records[r.offset] for r in out.rejected)
    assert state.next_offset == len(records)
    for off, event in out.observed:  # what accepted input became: what its bytes said
        plain = json.loads(records[off])
        assert (event.event_id, event.model, event.output) == \
            (plain["event_id"], plain["model"], plain["output"])
        assert event.model_version == plain.get("model_version", "unversioned")
        assert event.token_logprobs == plain.get("token_logprobs")
        text_fields = [event.event_id, event.model, event.output, event.model_version,
                       event.prompt or "", *event.segment, *event.segment.values()]
        for value in text_fields:
            value.encode("utf-8")  # raises on a lone surrogate
    saved = state.to_checkpoint(datetime.now(UTC))
    Checkpoint.model_validate_json(saved.model_dump_json())  # the write that used to fail
