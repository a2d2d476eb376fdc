"""The collector service: bus ``llm.outputs`` → pipeline → store, bus, Prometheus.

Delivery is at least once with idempotent effects. For each assigned partition the collector

1. restores the partition's checkpoint from the store (detector state, totals, next offset) and
   seeks there, so events a crashed predecessor already checkpointed are not observed twice;
2. validates each message; an invalid one, or one whose handling fails at any later stage,
   goes to the dead-letter topic with its raw bytes, its source topic/partition/offset and a
   reason (:mod:`~driftscope_llm.services.collector.batch`), and the partition moves on;
3. observes valid events; anomalies become incidents (deterministic ids, deduplicated in the
   store across replicas) and AnomalyEvents;
4. every ``checkpoint_every`` events (and on partition revocation and shutdown) flushes the
   producer, writes the checkpoint, and only then commits the consumer offset.

A crash between steps 3 and 4 replays events after the checkpoint: their effects on detector
state and totals were never saved, incidents come back with the same ids, and DLQ/anomaly
messages may repeat (consumers deduplicate on source offset / incident id).

The collector is given its bus (:class:`~driftscope_llm.services.bus.kafka.KafkaBus` in
production, :class:`~driftscope_llm.services.bus.memory.MemoryBus` in unit tests), its store and
its metrics; the poll loop and the definition of "idle" are the shared
:class:`~driftscope_llm.services.bus.loop.ConsumerLoop`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from driftscope_llm.services.bus.base import Bus, Message, Partition
from driftscope_llm.services.bus.loop import ConsumerLoop
from driftscope_llm.services.bus.settings import TopicSettings
from driftscope_llm.services.collector.batch import (
    DEFAULT_FATAL,
    Rejected,
    dead_letter_for,
    process_batch,
)
from driftscope_llm.services.collector.metrics import CollectorMetrics
from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline, RaisedAnomaly
from driftscope_llm.services.errors import BusError, StoreError
from driftscope_llm.services.ingest.decode import RecordDecoder
from driftscope_llm.services.schemas import AnomalyEvent, OutputEvent
from driftscope_llm.services.store.base import StateStore
from driftscope_llm.services.store.model import Incident

__all__ = ["Collector"]

log = logging.getLogger("driftscope.collector")


class Collector:
    """One collector replica. ``run()`` loops until ``stop()``, or until it has been caught up
    with every assigned partition for ``max_idle_s`` (batch runs and tests).

    Give it a store wrapped in :class:`~driftscope_llm.services.store.retry.RetryingStore` (the
    pipeline too), so a Redis restart pauses the loop instead of stopping it.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        store: StateStore,
        metrics: CollectorMetrics,
        bus: Bus,
        topics: TopicSettings,
        *,
        max_event_bytes: int = 1_000_000,
        checkpoint_every: int = 500,
        clock: Callable[[], float] = time.time,
        notify: Callable[[str, Incident], None] | None = None,
        decoder: RecordDecoder | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.notify = notify
        # one record -> N events (OTLP spans, OpenAI choices); default: formats auto-detected
        self.decoder = decoder if decoder is not None else RecordDecoder(
            max_event_bytes=max_event_bytes)
        self.store = store
        self.metrics = metrics
        self.bus = bus
        self.topics = topics
        self.max_event_bytes = max_event_bytes
        self.checkpoint_every = checkpoint_every
        self.clock = clock
        self._states: dict[Partition, PartitionState] = {}
        self._since_checkpoint: dict[Partition, int] = {}
        # per owned partition: the latest broker time seen (observed times never go back)
        self._observed: dict[Partition, float] = {}
        self._lag_exported: set[Partition] = set()  # partitions with a lag series
        self._last_summary = 0.0
        self._last_open_count = 0.0
        self._seen_streams: set[Any] = set()
        # kafka-python may call the rebalance hooks on its IO thread, concurrently with batch
        # handling here: state is only touched under this lock, and never while blocking on
        # the consumer (which needs that IO thread).
        self._lock = threading.RLock()
        self.loop = ConsumerLoop(bus, [topics.outputs], self, on_assign=self._acquire,
                                 on_revoke=self._release)

    # partition ownership -------------------------------------------------------------------
    def _acquire(self, assigned: list[Partition]) -> None:
        with self._lock:
            for tp in assigned:
                cp = self.store.load_checkpoint(tp.topic, tp.partition)
                if cp is not None:
                    if cp.lost_streams:  # no count without its state: both restart
                        self.metrics.streams_lost.inc(len(cp.lost_streams))
                        log.warning("%s[%d]: the checkpoint's states of %d streams were lost; "
                                    "they restart from this offset", tp.topic, tp.partition,
                                    len(cp.lost_streams))
                    state = PartitionState.from_checkpoint(cp, self.pipeline.drift)
                    self.bus.seek(tp, state.next_offset)
                else:
                    state = PartitionState(topic=tp.topic, partition=tp.partition)
                self._states[tp] = state
                self._since_checkpoint[tp] = 0
                self._observed.pop(tp, None)
                log.info("acquired %s[%d] at offset %d", tp.topic, tp.partition,
                         state.next_offset)

    def _release(self, revoked: list[Partition]) -> None:
        with self._lock:
            owned = [tp for tp in revoked if tp in self._states]
            if owned:
                try:
                    # May run on kafka-python's IO thread, where a blocking commit is not
                    # allowed; the checkpoint alone is enough, since the next owner seeks to it.
                    self._checkpoint(owned, commit=False)
                except (StoreError, BusError) as exc:  # the next owner replays from the last
                    log.warning("could not checkpoint revoked partitions: %s", exc)
            for tp in owned:
                self._states.pop(tp, None)
                self._since_checkpoint.pop(tp, None)
                self._observed.pop(tp, None)
            # a partition's lag is its new owner's to export: a series left here would add
            # the lag of partitions this member no longer reads (a false page after a rebalance)
            for tp in revoked:
                self._drop_lag(tp)

    # the loop ----------------------------------------------------------------------------------
    def stop(self) -> None:
        self.loop.stop()

    def run(self, *, max_idle_s: float | None = None) -> None:
        """Consume until stopped or idle (:class:`ConsumerLoop`), checkpoint, close the bus."""
        self.metrics.up.set(1)
        try:
            self.loop.run(max_idle_s=max_idle_s)
            self._checkpoint(list(self._states))
            self._states.clear()  # checkpointed and committed: nothing left for the revoke hook
        finally:
            self.metrics.up.set(0)
            self.bus.close()

    # what the loop calls (LoopHandler) ----------------------------------------------------------
    def handle(self, batch: dict[Partition, list[Message]]) -> bool:
        started = time.perf_counter()
        with self._lock:
            for tp, records in batch.items():
                if tp in self._states:
                    self._handle(tp, records)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._checkpoint_due(force=False)
        return True

    def on_idle(self) -> None:
        self._checkpoint_due(force=True)
        self._export_summaries()

    def on_lag(self, lag: dict[Partition, int]) -> None:
        """Export the lag of the partitions this member owns; drop every other series."""
        with self._lock:
            for tp in self._lag_exported - set(lag).intersection(self._states):
                self._drop_lag(tp)
            for tp, n in lag.items():
                if tp in self._states:
                    self.metrics.lag.labels(tp.topic, str(tp.partition)).set(n)
                    self._lag_exported.add(tp)

    def _drop_lag(self, tp: Partition) -> None:
        if tp in self._lag_exported:
            self._lag_exported.discard(tp)
            self.metrics.lag.remove(tp.topic, str(tp.partition))

    def _handle(self, tp: Partition, records: list[Message]) -> None:
        state = self._states[tp]
        self.metrics.consumed.labels(tp.topic).inc(len(records))
        now = self.clock()
        # one message's failure, at any stage, costs that message alone (collector/batch.py)
        out = process_batch(self.pipeline, state, [(rec.offset, rec.value) for rec in records],
                           max_bytes=self.max_event_bytes,
                           decode=lambda raw: self.decoder.decode(tp.topic, raw),
                           on_valid=lambda ev: self._observe_metrics(ev, now),
                           fatal=DEFAULT_FATAL,  # BusError is a ServiceError
                           observed=self._observed_times(tp, records, now))
        for direction, n in out.skewed.items():
            self.metrics.clock_skew.labels(direction).inc(n)
        self.metrics.duplicates.inc(len(out.duplicates))
        for rejected in out.rejected:
            self._dead_letter(tp, rejected)
        self.metrics.embedded.inc(out.embedded)
        for r in out.raised:
            self._publish_anomaly(r)
        self._since_checkpoint[tp] = self._since_checkpoint.get(tp, 0) + len(records)
        self._export_summaries()

    def _observed_times(self, tp: Partition, records: list[Message],
                        now: float) -> dict[int, float]:
        """Each record's observed time (collector/clock.py): its broker timestamp, never later
        than this collector's clock nor earlier than the partition's previous record's."""
        last = self._observed.get(tp, -float("inf"))
        out: dict[int, float] = {}
        for rec in records:
            broker = rec.timestamp if rec.timestamp is not None else now
            last = max(last, min(broker, now))
            out[rec.offset] = last
        if records:
            self._observed[tp] = last
        return out

    def _export_open_incidents(self) -> None:
        """Refresh ``driftscope_incidents_open`` from the store every 15 seconds."""
        now = self.clock()
        if now - self._last_open_count < 15.0:
            return
        self._last_open_count = now
        counts = self.store.count_open_incidents()  # "open" as the lifecycle defines it
        self.metrics.export_open_incidents(counts)

    def _export_summaries(self) -> None:
        """Refresh the per-signal gauges at most every two seconds (summaries are not free)."""
        now = self.clock()
        if now - self._last_summary < 2.0:
            return
        self._last_summary = now
        self._export_open_incidents()
        with self._lock:
            for state in self._states.values():
                for mon in state.monitors.values():
                    k = mon.key
                    self.metrics.export_summary((k.model, k.model_version, k.segment),
                                                mon.summary())

    def _observe_metrics(self, ev: OutputEvent, now: float) -> None:
        key = self.pipeline.key_for(ev)  # model and version past the caps fold into 'other'
        if key not in self._seen_streams:  # its series start at 0, before the first increment
            self._seen_streams.add(key)
            self.metrics.init_stream((key.model, key.model_version, key.segment),
                                     list(self.pipeline.drift.signals.items()))
        processed, length, logprob, refusals = self.metrics.event_series(
            (key.model, key.model_version, key.segment))
        processed.inc()
        length.observe(len(ev.output))
        if ev.token_logprobs:
            logprob.observe(sum(ev.token_logprobs) / len(ev.token_logprobs))
        if self.pipeline.extractor.is_refusal(ev.output):
            refusals.inc()
        self.metrics.event_age.observe(max(0.0, now - ev.ts_unix))

    def _dead_letter(self, tp: Partition, rejected: Rejected) -> None:
        self.metrics.invalid.labels(rejected.reason).inc()
        letter = dead_letter_for(rejected, topic=tp.topic, partition=tp.partition,
                                 received_at=datetime.fromtimestamp(self.clock(), UTC))
        self.bus.send(
            self.topics.dead_letter, key=f"{tp.topic}:{tp.partition}:{rejected.offset}".encode(),
            value=letter.model_dump_json().encode(),
            headers=[("driftscope-reason", rejected.reason.encode())])

    def _publish_anomaly(self, r: RaisedAnomaly) -> None:
        a = r.anomaly
        self.metrics.anomalies.labels(a.key.model, a.key.model_version, a.key.segment, a.signal,
                                      a.detector).inc()
        if r.opened:
            self.metrics.incidents_opened.labels(a.key.model, a.key.model_version, a.key.segment,
                                                 a.signal).inc()
        self.metrics.export_incident(a.key.model, a.key.model_version, r.incident.severity,
                                     max(1, len(r.incident.facets)))
        event = AnomalyEvent(
            incident_id=r.incident.id, kind="opened" if r.opened else "updated",
            model=a.key.model, model_version=a.key.model_version, segment=a.key.segment,
            signal=a.signal, detector=a.detector, statistic=a.statistic, threshold=a.threshold,
            effect_size=a.effect_size, event_id=a.event_id,
            ts=datetime.fromtimestamp(a.ts, UTC), exemplars=list(a.exemplars))
        self.bus.send(self.topics.anomalies, key=r.incident.id.encode(),
                           value=event.model_dump_json().encode())
        if self.notify is not None:
            self.notify("incident.opened" if r.opened else "incident.updated", r.incident)

    # checkpoints --------------------------------------------------------------------------------
    def _checkpoint_due(self, *, force: bool) -> None:
        with self._lock:
            due = [tp for tp, n in self._since_checkpoint.items()
                   if n > 0 and (force or n >= self.checkpoint_every)]
        if due:
            self._checkpoint(due)

    def _checkpoint(self, tps: list[Partition], *, commit: bool = True) -> None:
        """Flush what was sent, save state, then commit offsets: never the other way round."""
        with self._lock:
            offsets = self._save_checkpoints(tps)
        if not commit or not offsets:
            return
        try:
            self.bus.commit(offsets)
        except BusError as exc:
            # The checkpoint already holds these offsets and a restarted owner seeks there,
            # so a commit lost while the broker is away costs nothing; retry later.
            log.warning("offset commit failed (%s); the checkpoint keeps the offsets", exc)

    def _save_checkpoints(self, tps: list[Partition]) -> dict[Partition, int]:
        tps = [tp for tp in tps if tp in self._states]
        if not tps:
            return {}
        self.bus.flush()
        now = datetime.fromtimestamp(self.clock(), UTC)
        offsets = {}
        for tp in tps:
            state = self._states[tp]
            try:
                self.store.save_checkpoint(state.to_checkpoint(now))
            except StoreError:
                self.metrics.checkpoints.labels("failed").inc()
                raise
            self.metrics.checkpoints.labels("ok").inc()
            offsets[tp] = state.next_offset
            self._since_checkpoint[tp] = 0
        return offsets
