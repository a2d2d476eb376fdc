"""Poison isolation: one message can fail, never the loop that reads it.

Whatever goes wrong while handling one message — decoding, validation, signal extraction, the
embedder, a detector — costs that message alone: it becomes a :class:`Rejected` (reason, detail,
its raw bytes) that the caller sends to the dead-letter topic, and the partition moves on. The
other events of the same batch are observed exactly once, in offset order, whatever their
position relative to the failing one. Everything an event's content can break (decoding,
validation, its signals, the embedder) runs per event; the detectors then take the events in
chunks (:meth:`~driftscope_llm.services.collector.pipeline.Pipeline.observe_chunk`), so a bug
in a detector itself, which no message content reaches past validation, costs the events of
its chunk, still not the loop.

What is *not* a poison message: the infrastructure failing under it. An error of the state store
or the bus (:class:`~driftscope_llm.services.errors.ServiceError`, or any type the caller lists
in ``fatal``) propagates, so the caller retries or stops *without* advancing past the message —
dead-lettering every event during a Redis outage would lose them. ``MemoryError`` and other
``BaseException`` subclasses (``KeyboardInterrupt``, ``SystemExit``) propagate too.

The Kafka collector (:mod:`driftscope_llm.services.collector.service`) and the embedded
``replay`` both go through :func:`process_batch`, so they isolate the same way.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.collector.dedupe import RecentEvents
from driftscope_llm.services.collector.pipeline import (
    PartitionState,
    Pipeline,
    RaisedAnomaly,
    Row,
)
from driftscope_llm.services.errors import InvalidEventError, ServiceError
from driftscope_llm.services.ingest.results import Decoded
from driftscope_llm.services.schemas import DeadLetter, OutputEvent, parse_output_event

__all__ = [
    "DEFAULT_FATAL",
    "MAX_DEAD_LETTER_RAW",
    "BatchOutcome",
    "Rejected",
    "dead_letter_for",
    "decode_isolated",
    "parse_isolated",
    "process_batch",
]

log = logging.getLogger("driftscope.collector.isolation")

DEFAULT_FATAL: tuple[type[BaseException], ...] = (ServiceError, MemoryError)
"""Errors that are the infrastructure's, not the message's: they propagate."""

MAX_DEAD_LETTER_RAW = 512 * 1024
"""Raw bytes kept in a dead letter. Base64 grows them by a third, so a letter stays under Kafka's
default 1 MiB request size; longer messages keep their first bytes, their length and SHA-256."""

_DETAIL_CHARS = 1000


@dataclass(frozen=True)
class Rejected:
    """One message that will not be observed: where it was, why, and its exact bytes."""

    offset: int
    reason: str
    detail: str
    raw: bytes


@dataclass
class BatchOutcome:
    """What :func:`process_batch` made of a batch."""

    observed: list[tuple[int, OutputEvent]] = field(default_factory=list)
    raised: list[RaisedAnomaly] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    embedded: int = 0
    #: events whose ``ts`` was implausible, by direction (collector/clock.py)
    skewed: Counter[str] = field(default_factory=Counter)
    #: offsets of repeated deliveries of an event already counted (collector/dedupe.py):
    #: skipped, neither observed nor dead-lettered
    duplicates: list[int] = field(default_factory=list)


def _describe(exc: BaseException, stage: str) -> str:
    return f"{type(exc).__name__} while {stage}: {exc}"[:_DETAIL_CHARS]


def parse_isolated(raw: bytes | None, offset: int, *, max_bytes: int,
                   fatal: tuple[type[BaseException], ...] = DEFAULT_FATAL,
                   ) -> OutputEvent | Rejected:
    """Decode and validate one message; any failure becomes a :class:`Rejected`."""
    data = raw or b""
    try:
        return parse_output_event(data, max_bytes=max_bytes)
    except InvalidEventError as exc:
        return Rejected(offset, exc.reason, exc.detail[:_DETAIL_CHARS], data)
    except fatal:
        raise
    except Exception as exc:  # a parser bug must not stop the partition either
        log.exception("unexpected error decoding offset %d", offset)
        return Rejected(offset, "processing_failed", _describe(exc, "decoding"), data)


def decode_isolated(decode: Callable[[bytes], Decoded], raw: bytes, offset: int, *,
                    fatal: tuple[type[BaseException], ...] = DEFAULT_FATAL,
                    ) -> tuple[list[OutputEvent], list[Rejected]]:
    """Decode one record that may hold many events (OTLP spans, OpenAI choices; see
    :mod:`driftscope_llm.services.ingest`): its events, and one :class:`Rejected` per item that
    could not be mapped (with the record's raw bytes; the detail names the item)."""
    try:
        decoded = decode(raw)
    except fatal:
        raise
    except Exception as exc:
        log.exception("unexpected error decoding offset %d", offset)
        return [], [Rejected(offset, "processing_failed", _describe(exc, "decoding"), raw)]
    return decoded.events, [Rejected(offset, r.reason, r.error().detail[:_DETAIL_CHARS], raw)
                            for r in decoded.rejects]


def process_batch(
    pipeline: Pipeline,
    state: PartitionState,
    records: Sequence[tuple[int, bytes | None]],
    *,
    max_bytes: int,
    on_valid: Callable[[OutputEvent], None] | None = None,
    fatal: tuple[type[BaseException], ...] = DEFAULT_FATAL,
    decode: Callable[[bytes], Decoded] | None = None,
    batched: bool = True,
    observed: Mapping[int, float] | None = None,
) -> BatchOutcome:
    """Parse, embed and observe ``(offset, raw bytes)`` records, isolating each message.

    Each event's signals are computed on their own (a failure costs that event); the monitors
    then take the events in chunks (:meth:`Pipeline.observe_chunk`), with the same anomalies
    and state as one by one. ``batched=False`` observes them one by one (the reference path).

    ``decode`` (default: one OutputEvent per record) may turn one record into many events, all
    at the record's offset; each is measured, observed and isolated on its own.

    ``observed`` maps each offset to the time the record was observed (its broker timestamp,
    or its arrival in a replay): it orders versions and references and bounds the events'
    ``ts`` claims (:mod:`~driftscope_llm.services.collector.clock`); skewed claims are counted
    in ``skewed``. Without it the events' own ``ts`` are trusted.

    Records at offsets below ``state.next_offset`` are skipped (already in the state).
    ``on_valid`` runs for each event that parsed (the collector's per-event metrics), inside the
    same guard. On return ``state.next_offset`` is past every record handled, rejected or not.
    """
    out = BatchOutcome()
    fresh = [(offset, raw or b"") for offset, raw in records if offset >= state.next_offset]
    by_offset = dict(fresh)
    valid = _parse_all(fresh, out, max_bytes=max_bytes, on_valid=on_valid, fatal=fatal,
                       decode=decode, recent=state.recent_events)
    embeddings, failed, failed_events = _embed_isolated(pipeline, valid, by_offset, fatal)
    out.rejected.extend(failed)
    out.embedded = len(embeddings)
    rows: list[Row] = []
    for offset, event in valid:
        if id(event) in failed_events:  # only that event: a record's others are still observed
            continue
        try:
            row = pipeline.prepare(state, offset, event, embeddings.get(event.event_id),
                                   observed=None if observed is None else observed[offset])
        except fatal:
            raise
        except Exception as exc:
            log.exception("unexpected error preparing offset %d", offset)
            out.rejected.append(Rejected(offset, "processing_failed",
                                         _describe(exc, "computing signals"), by_offset[offset]))
            continue
        rows.append(row)
        if row.skew is not None:
            out.skewed[row.skew] += 1
    start = state.next_offset
    for chunk in pipeline.chunks(state, rows) if batched else ([row] for row in rows):
        _observe_guarded(pipeline, state, chunk, out, by_offset, fatal)
    if records:
        state.next_offset = max(start, max(off for off, _ in records) + 1)
    out.rejected.sort(key=lambda r: r.offset)
    return out


def _observe_guarded(pipeline: Pipeline, state: PartitionState, chunk: list[Row],
                     out: BatchOutcome, by_offset: dict[int, bytes],
                     fatal: tuple[type[BaseException], ...]) -> None:
    """One chunk through the monitors. Signals were computed per event, so what can fail here
    is a detector's own bug: it costs the chunk's events (dead-lettered), not the loop."""
    try:
        out.raised.extend(pipeline.observe_chunk(state, chunk))
    except fatal:
        raise
    except Exception as exc:
        log.exception("unexpected error observing offsets %d-%d", chunk[0].offset,
                      chunk[-1].offset)
        out.rejected.extend(Rejected(r.offset, "processing_failed", _describe(exc, "observing"),
                                     by_offset[r.offset]) for r in chunk)
    else:
        out.observed.extend((r.offset, r.event) for r in chunk)


def _parse_all(
    records: list[tuple[int, bytes]],
    out: BatchOutcome,
    *,
    max_bytes: int,
    on_valid: Callable[[OutputEvent], None] | None,
    fatal: tuple[type[BaseException], ...],
    decode: Callable[[bytes], Decoded] | None = None,
    recent: RecentEvents | None = None,
) -> list[tuple[int, OutputEvent]]:
    """The events that parsed (and passed ``on_valid``); the rest go to ``out.rejected``,
    repeats of an event ``recent`` remembers to ``out.duplicates``."""
    valid: list[tuple[int, OutputEvent]] = []
    for offset, raw in records:
        if decode is None:
            parsed = parse_isolated(raw, offset, max_bytes=max_bytes, fatal=fatal)
            events, rejects = ([], [parsed]) if isinstance(parsed, Rejected) else ([parsed], [])
        else:
            events, rejects = decode_isolated(decode, raw, offset, fatal=fatal)
        out.rejected.extend(rejects)
        for position, event in enumerate(events):
            if recent is not None and recent.repeat(raw, position):
                out.duplicates.append(offset)
                continue
            _measure(valid, out, offset, raw, event, on_valid, fatal)
    return valid


def _measure(valid: list[tuple[int, OutputEvent]], out: BatchOutcome, offset: int, raw: bytes,
             event: OutputEvent, on_valid: Callable[[OutputEvent], None] | None,
             fatal: tuple[type[BaseException], ...]) -> None:
    """Run ``on_valid`` on one event inside the guard; keep the event when it passes."""
    if on_valid is not None:
        try:
            on_valid(event)
        except fatal:
            raise
        except Exception as exc:
            log.exception("unexpected error measuring offset %d", offset)
            out.rejected.append(Rejected(offset, "processing_failed",
                                         _describe(exc, "measuring"), raw))
            return
    valid.append((offset, event))


def _embed_isolated(
    pipeline: Pipeline,
    valid: list[tuple[int, OutputEvent]],
    by_offset: dict[int, bytes],
    fatal: tuple[type[BaseException], ...],
) -> tuple[dict[str, npt.NDArray[np.float32]], list[Rejected], set[int]]:
    """One batched embedding call; when it fails, one call per event to find the culprit(s),
    returned as rejects and as the ``id()`` of each failed event object."""
    events = [ev for _, ev in valid]
    try:
        return pipeline.embed(events), [], set()
    except fatal:
        raise
    except Exception:
        log.exception("batched embedding failed; embedding the %d events one by one", len(events))
    embeddings: dict[str, npt.NDArray[np.float32]] = {}
    failed: list[Rejected] = []
    failed_events: set[int] = set()
    for offset, event in valid:
        try:
            embeddings.update(pipeline.embed([event]))
        except fatal:
            raise
        except Exception as exc:
            failed.append(Rejected(offset, "processing_failed", _describe(exc, "embedding"),
                                   by_offset[offset]))
            failed_events.add(id(event))
    return embeddings, failed, failed_events


def dead_letter_for(rejected: Rejected, *, topic: str, partition: int, received_at: datetime,
                    max_raw: int = MAX_DEAD_LETTER_RAW) -> DeadLetter:
    """The dead-letter record of ``rejected``; raw bytes over ``max_raw`` keep their head only
    (``raw_truncated``), with the full length and SHA-256 to match them against the source."""
    raw = rejected.raw
    return DeadLetter(
        reason=rejected.reason, detail=rejected.detail[:_DETAIL_CHARS], source_topic=topic,
        source_partition=partition, source_offset=rejected.offset,
        raw_b64=base64.b64encode(raw[:max_raw]).decode(), raw_bytes=len(raw),
        raw_truncated=len(raw) > max_raw, raw_sha256=hashlib.sha256(raw).hexdigest(),
        received_at=received_at)
