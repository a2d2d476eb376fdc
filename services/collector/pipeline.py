"""The collector's core: events in, per-stream drift monitors, incidents out.

Pure of Kafka: the Kafka service (:mod:`driftscope_llm.services.collector.service`) and the
embedded ``replay`` both drive this class, so the two raise the same anomalies on the same events.

Streams are keyed by (model, model_version, segment). Every event feeds its model version's
model-level stream (segment ``all``) and one stream per segment label it carries
(``route=billing``), with bounded cardinality and one false-alarm budget per model split between
them (:mod:`driftscope_llm.services.collector.segments`). Each partition of the input topic owns
the monitors of the streams whose events it carries (:class:`PartitionState`). Producers should
key messages by model so that one stream lives in one partition; when they do not, each
partition monitors its share of a stream on its own, which stays correct but detects later.

Batches: :meth:`Pipeline.process` (and the collector, through
:func:`~driftscope_llm.services.collector.batch.process_batch`) takes a poll's events at once.
Each event is prepared on its own (signals, redacted exemplar texts, stream keys: a
:class:`Row`), then the rows are cut into *chunks* that no stream boundary crosses: a chunk ends
before an event that opens a new stream (opening one may freeze another version's reference and
reads the store) and right after an event that completes a stream's reference (which is then
stored for later versions). Within a chunk every stream takes its events in one
:meth:`StreamMonitor.observe_batch` call, and the anomalies are turned into incidents in the
order the event-by-event path raises them (by event, model-level stream first), each with the
exemplar texts its stream's ring held at that event. The result is the event-by-event path's,
anomaly for anomaly and state for state; ``batched=False`` runs that path, kept as the
reference (``tests/unit/test_collector_batch.py`` compares the two).

Rollouts: a new model version's stream is compared, from its first event, with the previous
version's reference of the same segment. When the previous version's stream is still collecting
its reference (it saw fewer than ``reference_size`` events), its reference is frozen now with what
it has, provided each signal has at least ``min_reference_values`` values (signals with fewer
collect their own reference from the new version's first events). Only when no earlier version
has a usable reference does the new version's own first events become its reference.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.collector.cardinality import StreamCaps
from driftscope_llm.services.collector.clock import ClockSettings, EventClock, Skew
from driftscope_llm.services.collector.dedupe import RecentEvents
from driftscope_llm.services.collector.segments import SegmentKeyer, SegmentSettings
from driftscope_llm.services.collector.signals import SignalExtractor
from driftscope_llm.services.drift import (
    Anomaly,
    DriftSettings,
    Observation,
    ObservationBatch,
    ReferenceSnapshot,
    SignalValue,
    StreamKey,
    StreamMonitor,
)
from driftscope_llm.services.errors import NotFoundError
from driftscope_llm.services.keys import join_key
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.security.redaction import Redactor
from driftscope_llm.services.store import lifecycle
from driftscope_llm.services.store.base import StateStore
from driftscope_llm.services.store.facets import Facet, group_key
from driftscope_llm.services.store.model import (
    Checkpoint,
    Exemplar,
    Incident,
    incident_id_for,
)
from driftscope_llm.services.vocabulary import Signal

__all__ = ["Embedder", "PartitionState", "Pipeline", "RaisedAnomaly", "Row", "stream_id"]

_EXEMPLAR_CHARS = 2000
# Redact, then truncate: the redactor sees this much past the cut, so a secret that starts
# before the cut and is shorter than the margin is redacted whole, never stored half in clear.
_REDACT_MARGIN = 256


class Embedder(Protocol):
    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


def stream_id(key: StreamKey) -> str:
    """The stream's id in checkpoints: unambiguous whatever the names hold
    (:mod:`driftscope_llm.services.keys`)."""
    return join_key(key.model, key.model_version, key.segment, sep="|")


def sampled(event_id: str, rate: float) -> bool:
    """Deterministic sampling: the same event is embedded, or not, on every replay."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    h = int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")
    return h / 2**64 < rate


@dataclass
class PartitionState:
    """Everything one input partition owns: its streams' monitors, totals and recent texts."""

    topic: str
    partition: int
    next_offset: int = 0
    monitors: dict[str, StreamMonitor] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    recent: dict[str, OrderedDict[str, tuple[str | None, str]]] = field(default_factory=dict)
    keyer: SegmentKeyer | None = None  # built by the pipeline from the monitors' keys
    #: replay: judge ``ts`` claims against the file's own clock (collector/clock.py)
    follow_claims: bool = False
    clock: EventClock | None = None  # built by the pipeline; not checkpointed
    #: repeated deliveries are counted once (collector/dedupe.py); memory only
    recent_events: RecentEvents = field(default_factory=RecentEvents)

    def to_checkpoint(self, now: datetime) -> Checkpoint:
        monitors = {sid: m.state_dict() for sid, m in self.monitors.items()}
        for sid, ring in self.recent.items():
            monitors.setdefault(sid, {})
            monitors[sid] = {**monitors[sid], "_recent": [[k, p, o] for k, (p, o) in ring.items()]}
        return Checkpoint(topic=self.topic, partition=self.partition, next_offset=self.next_offset,
                          monitors=monitors, totals=dict(self.totals), saved_at=now)

    @classmethod
    def from_checkpoint(cls, cp: Checkpoint, settings: DriftSettings) -> PartitionState:
        state = cls(topic=cp.topic, partition=cp.partition, next_offset=cp.next_offset,
                    totals=dict(cp.totals))
        for sid, raw in cp.monitors.items():
            data = dict(raw)
            ring = data.pop("_recent", [])
            state.monitors[sid] = StreamMonitor.from_state(settings, data)
            state.recent[sid] = OrderedDict((k, (p, o)) for k, p, o in ring)
        return state


@dataclass(slots=True)
class Row:
    """One event ready to be observed (:meth:`Pipeline.prepare`): its signal values, its
    redacted exemplar texts (prompt, output) and the streams it feeds, model-level first.

    ``ts`` times its detectors and incidents (its own ``ts`` unless ``skew``), ``observed``
    orders versions and references (:mod:`~driftscope_llm.services.collector.clock`)."""

    offset: int
    event: OutputEvent
    ts: float
    values: Mapping[str, SignalValue]
    texts: tuple[str | None, str]
    keys: list[StreamKey]
    sids: list[str]
    observed: float = 0.0
    skew: Skew | None = None


def _observe_rows(mon: StreamMonitor, rows: Sequence[Row]) -> list[Anomaly]:
    """``rows`` through one monitor: as one :class:`ObservationBatch` (columns) when they all
    carry the same signal names (what :meth:`Pipeline.prepare` makes), else one by one (a
    column would turn a name a row lacks into "not measured", which counts as missing)."""
    names = tuple(rows[0].values)
    if any(tuple(r.values) != names for r in rows):
        return [a for r in rows
                for a in mon.observe(Observation(event_id=r.event.event_id, ts=r.ts,
                                                 values=r.values))]
    return mon.observe_batch(ObservationBatch(
        event_ids=[r.event.event_id for r in rows], ts=[r.ts for r in rows],
        values={n: [r.values[n] for r in rows] for n in names}))


def _remember(ring: OrderedDict[str, tuple[str | None, str]], event_id: str,
              texts: tuple[str | None, str], limit: int) -> None:
    """Put an event's redacted texts in its stream's ring, dropping the oldest past ``limit``."""
    ring[event_id] = texts
    while len(ring) > limit:
        ring.popitem(last=False)


@dataclass(frozen=True)
class RaisedAnomaly:
    """An anomaly as the pipeline reports it: the detector's finding plus its incident."""

    anomaly: Anomaly
    incident: Incident
    opened: bool

    def to_dict(self) -> dict[str, Any]:
        a = self.anomaly
        return {
            "event_id": a.event_id,
            "ts": datetime.fromtimestamp(a.ts, UTC).isoformat(),
            "model": a.key.model,
            "model_version": a.key.model_version,
            "segment": a.key.segment,
            "signal": a.signal,
            "detector": a.detector,
            "statistic": a.statistic,
            "threshold": a.threshold,
            "effect_size": a.effect_size,
            "p_value": a.p_value,
            "exemplars": list(a.exemplars),
            "incident_id": self.incident.id,
            "incident": "opened" if self.opened else "updated",
            "severity": self.incident.severity,
            "facets": len(self.incident.facets),
        }


class Pipeline:
    """Turn validated events into monitor observations and anomalies into incidents."""

    def __init__(
        self,
        drift: DriftSettings,
        extractor: SignalExtractor,
        segments: SegmentSettings,
        store: StateStore,
        *,
        embedder: Embedder | None = None,
        embed_sampling_rate: float = 0.0,
        cooldown_s: float = 3600.0,
        redactor: Redactor | None = None,
        caps: StreamCaps | None = None,
        clock: ClockSettings | None = None,
        on_segment_fold: Callable[[str], None] | None = None,
    ) -> None:
        self.drift = drift
        # how far an event's ts may be from its broker/arrival time (collector/clock.py)
        self.clock = clock if clock is not None else ClockSettings()
        self.on_segment_fold = on_segment_fold
        # exemplar texts are redacted before they enter the ring: the ring is what checkpoints
        # and incident records store (default: every built-in detector on)
        self.redactor = redactor if redactor is not None else Redactor()
        self.extractor = extractor
        self.segments = segments
        self.store = store
        self.embedder = embedder
        self.embed_rate = embed_sampling_rate if embedder is not None else 0.0
        self.cooldown_s = cooldown_s
        # model version -> its latest incident, which absorbs new facets until it is resolved,
        # even past the grouping window (not checkpointed: after a restart the window decides)
        self._version_incident: dict[str, str] = {}
        self._ring = max(drift.window_size, 100)
        # models and versions come from traffic: past the caps they fold into 'other'
        self.caps = caps if caps is not None else StreamCaps()
        self._sids: dict[StreamKey, str] = {}

    def key_for(self, event: OutputEvent) -> StreamKey:
        """The event's bounded per-event metrics key (the model-level stream by default)."""
        model, version = self.caps.fold(event.model, event.model_version, count=False)
        return StreamKey(model=model, model_version=version,
                         segment=self.segments.key_for(event.segment))

    def keys_for(self, state: PartitionState, event: OutputEvent) -> list[StreamKey]:
        """Every stream the event feeds: model-level first, then one per segment family."""
        if state.keyer is None:
            state.keyer = SegmentKeyer(self.segments, on_fold=self.on_segment_fold)
            state.keyer.restore((m.key.model, m.key.segment) for m in state.monitors.values())
            self.caps.restore((m.key.model, m.key.model_version)
                              for m in state.monitors.values())
        model, version = self.caps.fold(event.model, event.model_version)
        return [StreamKey(model=model, model_version=version, segment=seg)
                for seg in state.keyer.segments_for(model, event.segment)]

    def _monitor(self, state: PartitionState, key: StreamKey, observed: float) -> StreamMonitor:
        """The stream's monitor, opened when new: ``observed`` (never a client's claim) is the
        version's first-seen time, which decides which earlier version it is compared with."""
        sid = stream_id(key)
        mon = state.monitors.get(sid)
        if mon is None:
            self.store.record_version(key.model, key.model_version, observed)
            snap = self.store.previous_reference(key.model, key.model_version, key.segment)
            if snap is None and self._freeze_earlier(state, key, observed):
                snap = self.store.previous_reference(key.model, key.model_version, key.segment)
            reference = ReferenceSnapshot.from_dict(snap) if snap is not None else None
            assert state.keyer is not None
            mon = StreamMonitor(self.drift, key, reference=reference,
                                budget_share=state.keyer.budget_share(key.segment))
            state.monitors[sid] = mon
            state.recent[sid] = OrderedDict()
        return mon

    def _freeze_earlier(self, state: PartitionState, key: StreamKey, observed: float) -> bool:
        """End the reference phase of this segment's streams of other versions of the model
        (a rollout began): freeze what they collected and store it. True if any was stored."""
        stored = False
        for mon in state.monitors.values():
            k = mon.key
            if (k.model, k.segment) != (key.model, key.segment) or (
                    k.model_version == key.model_version or mon.is_reference_ready):
                continue
            snap = mon.freeze_reference()
            if snap is not None:
                self.store.put_reference(k.model, k.model_version, k.segment, snap.to_dict(),
                                         observed)
                stored = True
        return stored

    def embed(self, events: Sequence[OutputEvent]) -> dict[str, npt.NDArray[np.float32]]:
        """Embeddings of the sampled events, computed in one batch."""
        if self.embedder is None:
            return {}
        chosen = [e for e in events if sampled(e.event_id, self.embed_rate)]
        if not chosen:
            return {}
        vecs = self.embedder.encode([e.output for e in chosen])
        return {e.event_id: vecs[i] for i, e in enumerate(chosen)}

    # -- one event's preparation ---------------------------------------------------------------

    def prepare(self, state: PartitionState, offset: int, event: OutputEvent,
                embedding: npt.NDArray[np.float32] | None = None, *,
                observed: float | None = None) -> Row:
        """Everything about one event that does not touch a monitor: its signals (with the
        embedding, if any), its redacted exemplar texts, the streams it feeds and its timing.
        ``observed`` is the broker (or arrival) time; without it the event's own ``ts`` is all
        there is and is trusted (tests and benchmarks of the detectors). Raises what a signal
        raises; the caller isolates the event (collector/batch.py)."""
        values: dict[str, SignalValue] = dict(self.extractor.extract(event))
        values[Signal.EMBEDDING] = embedding
        return self.prepare_values(state, offset, event, values, observed=observed)

    def prepare_values(self, state: PartitionState, offset: int, event: OutputEvent,
                       values: Mapping[str, SignalValue], *,
                       observed: float | None = None) -> Row:
        """Like :meth:`prepare`, with the signal values given."""
        prompt = event.prompt
        texts = (
            None if prompt is None else self.redactor.redact(
                prompt[:_EXEMPLAR_CHARS + _REDACT_MARGIN])[:_EXEMPLAR_CHARS],
            self.redactor.redact(event.output[:_EXEMPLAR_CHARS + _REDACT_MARGIN])[
                :_EXEMPLAR_CHARS],
        )
        keys = self.keys_for(state, event)
        claim = event.ts_unix
        if observed is None:
            return Row(offset, event, claim, values, texts, keys, [self._sid(k) for k in keys],
                       claim)
        if state.clock is None:
            state.clock = EventClock(self.clock, follow_claims=state.follow_claims)
        timing = state.clock.judge(claim, observed=observed)
        return Row(offset, event, timing.ts, values, texts, keys, [self._sid(k) for k in keys],
                   timing.observed, timing.skew)

    def _sid(self, key: StreamKey) -> str:
        sid = self._sids.get(key)
        if sid is None:  # bounded: one entry per stream the caps admit
            sid = self._sids[key] = stream_id(key)
        return sid

    # -- observing ---------------------------------------------------------------------------------

    def process(
        self,
        state: PartitionState,
        events: Sequence[tuple[int, OutputEvent]],
        embeddings: dict[str, npt.NDArray[np.float32]] | None = None,
        *,
        batched: bool = True,
    ) -> list[RaisedAnomaly]:
        """Observe ``(offset, event)`` pairs in order; skip offsets already in ``state``.

        ``batched=False`` observes them one by one: the reference the batched path must equal.
        """
        fresh = [(off, ev) for off, ev in events if off >= state.next_offset]
        if embeddings is None:
            embeddings = self.embed([ev for _, ev in fresh])
        rows = [self.prepare(state, off, ev, embeddings.get(ev.event_id)) for off, ev in fresh]
        return self.observe(state, rows, batched=batched)

    def process_values(
        self, state: PartitionState,
        items: Sequence[tuple[int, OutputEvent, Mapping[str, SignalValue]]],
        *, batched: bool = True,
    ) -> list[RaisedAnomaly]:
        """Like :meth:`process`, with each event's signal values given instead of extracted
        (benchmarks and tests that plant changes in the signals themselves)."""
        rows = [self.prepare_values(state, off, ev, values) for off, ev, values in items
                if off >= state.next_offset]
        return self.observe(state, rows, batched=batched)

    def observe(self, state: PartitionState, rows: Sequence[Row], *,
                batched: bool = True) -> list[RaisedAnomaly]:
        """Observe prepared rows in order and advance ``state.next_offset`` past each."""
        raised: list[RaisedAnomaly] = []
        if not batched:
            for row in rows:
                raised.extend(self._observe_row(state, row))
                state.next_offset = row.offset + 1
            return raised
        for chunk in self._chunks(state, rows):
            raised.extend(self.observe_chunk(state, chunk))
        return raised

    def chunks(self, state: PartitionState, rows: Sequence[Row]) -> Iterator[list[Row]]:
        """Cut ``rows`` into the runs :meth:`observe_chunk` takes (see the module docstring).
        Each chunk must be observed before the next one is cut."""
        return self._chunks(state, rows)

    def _chunks(self, state: PartitionState, rows: Sequence[Row]) -> Iterator[list[Row]]:
        chunk: list[Row] = []
        pending: dict[str, int] = {}  # stream id -> its events in the chunk
        monitors, ref_size = state.monitors, self.drift.reference_size
        for row in rows:
            if any(sid not in monitors for sid in row.sids):  # opens a stream: on its own
                if chunk:
                    yield chunk
                    chunk, pending = [], {}
                yield [row]
                continue
            chunk.append(row)
            completes = False
            for sid in row.sids:
                n = pending[sid] = pending.get(sid, 0) + 1
                mon = monitors[sid]
                completes |= not mon.is_reference_ready and mon.n_events + n >= ref_size
            if completes:  # its reference is stored before any later event is observed
                yield chunk
                chunk, pending = [], {}
        if chunk:
            yield chunk

    def observe_chunk(self, state: PartitionState, chunk: Sequence[Row]) -> list[RaisedAnomaly]:
        """Observe one chunk (:meth:`chunks`): one ``observe_batch`` per stream, then the
        rings, incidents and completed references in the event-by-event path's order."""
        if len(chunk) == 1:  # an event that opens a stream, or a poll of one
            opened = self._observe_row(state, chunk[0])
            state.next_offset = chunk[0].offset + 1
            return opened
        positions: dict[str, list[int]] = {}
        for pos, row in enumerate(chunk):
            for sid in row.sids:
                positions.setdefault(sid, []).append(pos)
        found: list[tuple[int, int, Anomaly]] = []  # (position, stream rank, anomaly)
        completed: list[str] = []
        for sid, where in positions.items():
            mon = state.monitors[sid]
            start, was_ready = mon.n_events, mon.is_reference_ready
            for a in _observe_rows(mon, [chunk[p] for p in where]):
                pos = where[a.event_index - start]
                found.append((pos, chunk[pos].sids.index(sid), a))
            state.totals[sid] = state.totals.get(sid, 0) + len(where)
            if not was_ready and mon.is_reference_ready:
                completed.append(sid)
        found.sort(key=lambda f: (f[0], f[1]))  # stable: a stream's own order is kept
        raised: list[RaisedAnomaly] = []
        i, recent, limit = 0, state.recent, self._ring
        for pos, row in enumerate(chunk):
            eid = row.event.event_id
            for sid in row.sids:
                _remember(recent[sid], eid, row.texts, limit)
            while i < len(found) and found[i][0] == pos:
                _, rank, a = found[i]
                raised.append(self._incident(a, recent[row.sids[rank]]))
                i += 1
        last = chunk[-1]
        for sid in completed:  # only the chunk's last event completes a reference
            self._store_reference(state.monitors[sid], last.observed)
        state.next_offset = last.offset + 1
        return raised

    def _observe_row(self, state: PartitionState, row: Row) -> list[RaisedAnomaly]:
        """The event-by-event path: each of the row's streams observes it in turn."""
        obs = Observation(event_id=row.event.event_id, ts=row.ts, values=row.values)
        raised: list[RaisedAnomaly] = []
        for key, sid in zip(row.keys, row.sids, strict=True):
            mon = self._monitor(state, key, row.observed)
            was_ready = mon.is_reference_ready
            anomalies = mon.observe(obs)
            state.totals[sid] = state.totals.get(sid, 0) + 1
            ring = state.recent[sid]
            _remember(ring, row.event.event_id, row.texts, self._ring)
            if not was_ready and mon.is_reference_ready:
                self._store_reference(mon, row.observed)
            raised.extend(self._incident(a, ring) for a in anomalies)
        return raised

    def _store_reference(self, mon: StreamMonitor, observed: float) -> None:
        snap = mon.reference_snapshot()
        if snap is not None:
            k = mon.key
            self.store.put_reference(k.model, k.model_version, k.segment, snap.to_dict(),
                                     observed)

    def _incident(
        self, a: Anomaly, ring: OrderedDict[str, tuple[str | None, str]]
    ) -> RaisedAnomaly:
        """Fold the anomaly into its model version's live incident as a facet (or open one):
        every segment, signal and detector raising within the grouping window (``cooldown_s``,
        event time) is one incident (:mod:`driftscope_llm.services.store.facets`)."""
        k = a.key
        gk = group_key(k.model, k.model_version)
        at = datetime.fromtimestamp(a.ts, UTC)
        exemplars = []
        for eid in a.exemplars:
            prompt, output = ring.get(eid, (None, None))
            exemplars.append(Exemplar(event_id=eid, prompt=prompt, output=output))
        facet = Facet(
            segment=k.segment, signal=a.signal, detector=a.detector, effect_size=a.effect_size,
            effect_unit=a.effect_unit, min_effect=self.drift.signals[a.signal].min_effect,
            direction=a.direction, statistic=a.statistic, threshold=a.threshold,
            p_value=a.p_value, first_event_id=a.event_id, first_at=at, last_at=at,
            exemplars=list(a.exemplars))
        incident = Incident(
            id=incident_id_for(gk, a.event_id), opened_at=at, updated_at=at, model=k.model,
            model_version=k.model_version, segment=k.segment, signal=a.signal,
            detector=a.detector, statistic=a.statistic, threshold=a.threshold,
            effect_size=a.effect_size, p_value=a.p_value, event_id=a.event_id,
            exemplars=exemplars, reference_summary=dict(a.reference_summary),
            window_summary=dict(a.window_summary), facets=[facet],
        )
        incident.apply_facets()
        lifecycle.opened(incident, at)
        again = self._continuing(gk, incident)
        if again is not None:
            return RaisedAnomaly(anomaly=a, incident=again, opened=False)
        stored, opened = self.store.open_or_update_incident(incident, gk, self.cooldown_s)
        self._version_incident[gk] = stored.id
        return RaisedAnomaly(anomaly=a, incident=stored, opened=opened)

    def _continuing(self, gk: str, incident: Incident) -> Incident | None:
        """The version's latest incident updated with ``incident``, unless it is resolved.

        The grouping window (``cooldown_s``, extended by every update) is how the state store
        groups anomalies across replicas; within one collector a version's incident keeps
        absorbing facets past it until someone resolves it: a rollout is one change, a persisting
        drift re-raises each facet only once per cooldown, and a quiet segment's stream may see
        the change hours after the model-level stream did. ``None`` otherwise.
        """
        inc_id = self._version_incident.get(gk)
        if inc_id is None:
            return None
        try:
            if not lifecycle.is_open(self.store.get_incident(inc_id).state):
                return None
            return self.store.update_incident(inc_id, lambda s: s.absorb(incident))
        except NotFoundError:  # expired from the store
            return None
