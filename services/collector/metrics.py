"""The collector's Prometheus metrics, on a registry passed in.

Label cardinality is bounded: ``model`` and ``model_version`` come from the events (one series set
per deployed version), ``segment`` only from the allow-list in
:class:`~driftscope_llm.services.config.SegmentSettings`, ``signal``/``detector`` from the drift
settings, and ``reason`` from the fixed list of invalid-event reasons. Raw text never becomes a
label.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from driftscope_llm.services.collector.clock import SKEW_DIRECTIONS
from driftscope_llm.services.schemas import INVALID_REASONS
from driftscope_llm.services.vocabulary import Signal

if TYPE_CHECKING:
    from driftscope_llm.services.drift import MonitorSummary

__all__ = ["CollectorMetrics"]

_STREAM = ("model", "model_version", "segment")
_LOGPROB_BUCKETS = (-5.0, -3.0, -2.0, -1.5, -1.0, -0.75, -0.5, -0.35, -0.25, -0.15, -0.1, 0.0)


class CollectorMetrics:
    """All metrics of one collector process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter(
            "driftscope_events_consumed_total", "Messages read from the input topic.",
            ["topic"], registry=registry)
        self.processed = Counter(
            "driftscope_events_processed_total", "Valid events observed by the drift monitors.",
            _STREAM, registry=registry)
        self.invalid = Counter(
            "driftscope_events_invalid_total",
            "Messages sent to the dead-letter topic, by machine-readable reason.",
            ["reason"], registry=registry)
        self.streams_folded = Counter(
            "driftscope_streams_folded_total",
            "Events monitored as model, version or segment value 'other': kind 'model' or "
            "'version' past the cardinality caps (cardinality.max_*, label empty), kind "
            "'segment' past segments.max_values or outside segments.allowed (label: the "
            "segment label whose value was folded).", ["kind", "label"], registry=registry)
        for kind in ("model", "version"):
            self.streams_folded.labels(kind, "")
        self.clock_skew = Counter(
            "driftscope_events_clock_skew_total",
            "Events whose ts lies too far behind or ahead of their broker time "
            "(clock.max_behind_s / clock.max_ahead_s): kept, timed by the broker instead, never "
            "used for ordering.", ["direction"], registry=registry)
        for direction in SKEW_DIRECTIONS:
            self.clock_skew.labels(direction)
        self.duplicates = Counter(
            "driftscope_events_duplicate_total",
            "Repeated deliveries of an event already counted on its partition (same id, time, "
            "model, version and output; a client's retry): skipped.", registry=registry)
        self.embedded = Counter(
            "driftscope_embeddings_computed_total", "Outputs embedded for the embedding signal.",
            registry=registry)
        self.logprob_mean = Histogram(
            "driftscope_signal_logprob_mean", "Mean token logprob (nats) of each output.",
            _STREAM, registry=registry,
            buckets=_LOGPROB_BUCKETS)
        self.output_length = Histogram(
            "driftscope_signal_output_length_chars", "Output length in characters.",
            _STREAM, registry=registry,
            buckets=(10, 25, 50, 100, 200, 400, 800, 1600, 3200, 6400))
        self.refusals = Counter(
            "driftscope_refusals_total", "Outputs that matched a refusal pattern.",
            _STREAM, registry=registry)
        self.window_value = Gauge(
            "driftscope_signal_window_value",
            "Current window's mean of a signal (a rate for boolean signals).",
            (*_STREAM, "signal"), registry=registry)
        self.reference_value = Gauge(
            "driftscope_signal_reference_value",
            "Reference mean of a signal (a rate for boolean signals).",
            (*_STREAM, "signal"), registry=registry)
        self.refusal_rate = Gauge(
            "driftscope_refusal_rate_ratio", "Refusal rate over the current window.",
            _STREAM, registry=registry)
        self.detector_statistic = Gauge(
            "driftscope_detector_statistic", "Latest statistic of a detector.",
            (*_STREAM, "signal", "detector"), registry=registry)
        self.detector_threshold = Gauge(
            "driftscope_detector_threshold", "Threshold the statistic is compared with.",
            (*_STREAM, "signal", "detector"), registry=registry)
        self.detector_alarm = Gauge(
            "driftscope_detector_alarm", "1 while the detector is in alarm (cooldown), else 0.",
            (*_STREAM, "signal", "detector"), registry=registry)
        self.anomalies = Counter(
            "driftscope_anomalies_total", "Anomalies raised by detectors.",
            (*_STREAM, "signal", "detector"), registry=registry)
        self.incidents_opened = Counter(
            "driftscope_incidents_opened_total", "Incidents opened (not updates).",
            (*_STREAM, "signal"), registry=registry)
        self.incident_facets = Gauge(
            "driftscope_incident_facets",
            "Facets of the latest incident of a model version, labelled with its severity "
            "(critical, warning, info); one series per model version.",
            ["model", "model_version", "severity"], registry=registry)
        self.lag = Gauge(
            "driftscope_consumer_lag_messages", "Messages behind the end of each partition.",
            ["topic", "partition"], registry=registry)
        self.batch_seconds = Histogram(
            "driftscope_processing_seconds", "Wall time to process one polled batch.",
            registry=registry, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.event_age = Histogram(
            "driftscope_event_age_seconds", "Time from an event's ts to its processing.",
            registry=registry, buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600))
        self.checkpoints = Counter(
            "driftscope_checkpoints_total", "Checkpoints written to the state store.",
            ["outcome"], registry=registry)
        self.streams_lost = Counter(
            "driftscope_checkpoint_streams_lost_total",
            "Stream states a restored checkpoint listed but the state store no longer held "
            "(Redis restarted without persistence, failed over or flushed): those streams "
            "restart, their counts with them.", registry=registry)
        self.up = Gauge("driftscope_collector_up", "1 while the consume loop runs.",
                        registry=registry)
        self.incidents_open = Gauge(
            "driftscope_incidents_open",
            "Incidents not resolved, from the state store (the same on every replica).",
            _STREAM, registry=registry)
        self._open_labels: set[tuple[str, str, str]] = set()
        self._severity: dict[tuple[str, str], str] = {}
        self._event_series: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}
        for reason in INVALID_REASONS:
            self.invalid.labels(reason)
        for outcome in ("ok", "failed"):
            self.checkpoints.labels(outcome)

    def count_fold(self, kind: str, label: str = "") -> None:
        """One event folded into ``other`` (:class:`~driftscope_llm.services.collector.
        cardinality.StreamCaps` for models and versions, :class:`~driftscope_llm.services.
        collector.segments.SegmentKeyer` for segment values)."""
        self.streams_folded.labels(kind, label).inc()

    def event_series(self, labels: tuple[str, str, str]) -> tuple[Any, Any, Any, Any]:
        """The per-event series of one (folded) stream: processed, output length, mean logprob,
        refusals. Looked up once per stream, not once per event (``labels()`` costs a lock and
        a dict lookup per call); bounded like the stream labels themselves."""
        series = self._event_series.get(labels)
        if series is None:
            series = self._event_series[labels] = (
                self.processed.labels(*labels), self.output_length.labels(*labels),
                self.logprob_mean.labels(*labels), self.refusals.labels(*labels))
        return series

    def init_stream(self, labels: tuple[str, str, str], signals: list[tuple[str, Any]]) -> None:
        """Create a new stream's counters at 0, so ``rate()`` sees their first increment."""
        self.processed.labels(*labels)
        self.refusals.labels(*labels)
        for signal, config in signals:
            self.incidents_opened.labels(*labels, signal)
            for det in config.detectors:
                self.anomalies.labels(*labels, signal, det)

    def export_incident(self, model: str, model_version: str, severity: str,
                        facets: int) -> None:
        """The latest incident of ``(model, model_version)``: its facet count at its severity
        (a severity change moves the series, so one series per version is ever non-stale)."""
        old = self._severity.get((model, model_version))
        if old is not None and old != severity:
            self.incident_facets.remove(model, model_version, old)
        self._severity[(model, model_version)] = severity
        self.incident_facets.labels(model, model_version, severity).set(facets)

    def export_open_incidents(self, counts: dict[tuple[str, str, str], int]) -> None:
        """Set the open-incident gauges; streams that no longer have any drop to 0."""
        for labels in list(self._open_labels - set(counts)):
            self.incidents_open.labels(*labels).set(0)
        for labels, n in counts.items():
            self.incidents_open.labels(*labels).set(n)
        self._open_labels |= set(counts)

    def export_summary(self, labels: tuple[str, str, str], summary: MonitorSummary) -> None:
        """Copy a :meth:`driftscope_llm.services.drift.StreamMonitor.summary` into the gauges."""
        for signal, info in summary.signals.items():
            if info.state != "monitoring":
                continue
            cur = _finite(info.window_level)
            ref = _finite(info.reference_level)
            if cur is not None:
                self.window_value.labels(*labels, signal).set(cur)
                if signal == Signal.REFUSAL:
                    self.refusal_rate.labels(*labels).set(cur)
            if ref is not None:
                self.reference_value.labels(*labels, signal).set(ref)
            for det, d in info.detectors.items():
                if d.disabled:
                    continue
                stat, thr = d.statistic, d.threshold
                if stat is not None and math.isfinite(stat):
                    self.detector_statistic.labels(*labels, signal, det).set(stat)
                if thr is not None and math.isfinite(thr):
                    self.detector_threshold.labels(*labels, signal, det).set(thr)
                self.detector_alarm.labels(*labels, signal, det).set(
                    1 if d.cooling_down and d.alarms else 0)


def _finite(level: float | None) -> float | None:
    """The one number a dashboard plots for a window or reference (its mean, or its rate),
    when it has one."""
    return level if level is not None and math.isfinite(level) else None
