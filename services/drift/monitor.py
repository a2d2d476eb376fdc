"""StreamMonitor: every detector of every signal of one stream (model, version, segment).

Life of a stream: the first ``reference_size`` events (or a given :class:`ReferenceSnapshot`)
form the reference; afterwards each value enters its signal's window and every sequential
detector, and each signal's window tests run once ``test_every`` new values have arrived. An
alarm on (signal, detector) re-arms that detector (sequential statistic reset) and silences it for
``cooldown_events`` stream events, so a continuing drift yields one anomaly per cooldown.

Rules for odd input (never an exception from :meth:`StreamMonitor.observe`): ``None`` = not
measured (counted as missing); values breaking the kind's rule (see
:mod:`driftscope_llm.services.drift.reference`) are counted as ``non_finite`` or ``invalid`` and
skipped; a window with fewer than ``min_window`` values is not tested; a signal whose reference is
degenerate (e.g. constant) has detectors that stay off and say so in :meth:`StreamMonitor.summary`.

Two doors, one meaning: :meth:`StreamMonitor.observe` takes one event (the reference semantics);
:meth:`StreamMonitor.observe_batch` takes a poll's consecutive events in columns and raises the
same anomalies in the same order and leaves the same state, several times faster (array checks
of columns, every CUSUM in one array pass, windows extended slice by slice; see
``docs/drift.md`` "Performance"). Both share the effect gate of
:mod:`driftscope_llm.services.drift.effect_precheck`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift.calibration import Budget, split_budget
from driftscope_llm.services.drift.columns import Column, coerce_column
from driftscope_llm.services.drift.detector import (
    Detector,
    DetectorContext,
    Finding,
    SequentialDetector,
    WindowDetector,
    detector_class,
)
from driftscope_llm.services.drift.effect_precheck import EffectGate, plan_rounds
from driftscope_llm.services.drift.effects import WindowView
from driftscope_llm.services.drift.embedding_space import EmbeddingReference
from driftscope_llm.services.drift.exemplars import select_exemplars
from driftscope_llm.services.drift.monitor_summary import (
    DetectorSummary,
    EffectSummary,
    MonitorSummary,
    SignalSummary,
)
from driftscope_llm.services.drift.records import Anomaly, Observation, ObservationBatch, StreamKey
from driftscope_llm.services.drift.reference import (
    INVALID,
    MAX_ABS,
    MISSING,
    NON_FINITE,
    ReferenceCollector,
    ReferenceSnapshot,
    SignalReference,
    coerce,
    reference_from_dict,
    reference_kind,
)
from driftscope_llm.services.drift.sequential import update_all
from driftscope_llm.services.drift.settings import DriftSettings, SignalConfig, SignalKind
from driftscope_llm.services.drift.window import SignalWindow
from driftscope_llm.services.errors import StateMismatchError

__all__ = ["StreamMonitor"]

STATE_FORMAT = 1

IntArray = npt.NDArray[np.int64]


def derived_seed(settings: DriftSettings, key: StreamKey, *parts: str) -> int:
    """A 63-bit seed specific to the stream and ``parts`` (stable across processes)."""
    text = "\x1f".join((str(settings.seed), key.model, key.model_version, key.segment, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


class _Signal:
    """One signal's runtime state inside a monitor."""

    __slots__ = ("alarms", "collector", "config", "continuous", "cooldown_until", "counts",
                 "fast_type", "gate", "kind", "name", "reference", "seq", "tests", "window")

    def __init__(self, name: str, config: SignalConfig) -> None:
        self.name = name
        self.config = config
        self.kind = config.kind
        self.continuous = config.kind is SignalKind.CONTINUOUS
        # values of this exact type skip the general rule (a range check aside)
        self.fast_type: type | None = {SignalKind.CONTINUOUS: float, SignalKind.BOOLEAN: bool,
                                       SignalKind.CATEGORICAL: str}.get(config.kind)
        self.counts = {"observed": 0, "missing": 0, NON_FINITE: 0, INVALID: 0}
        self.collector: ReferenceCollector | None = ReferenceCollector(config.kind)
        self.reference: SignalReference | None = None
        self.window: SignalWindow | None = None
        self.gate: EffectGate | None = None
        self.seq: list[SequentialDetector] = []
        self.tests: list[WindowDetector] = []
        self.cooldown_until: dict[str, int] = {d: 0 for d in config.detectors}
        self.alarms: dict[str, int] = {d: 0 for d in config.detectors}

    @property
    def detectors(self) -> list[Detector]:
        return [*self.seq, *self.tests]


_Alarm = tuple[int, int, SequentialDetector, Finding]
"""A sequential detector's finding: (position, the detector's order in its signal, it, finding)."""


def _sequential_alarms(pending: list[tuple[_Signal, Any, IntArray]]) -> list[list[_Alarm]]:
    """Every sequential detector of every pending signal over its values, at once (detectors
    never read the window, so they can run ahead of it): per signal, its alarms in the order
    :meth:`StreamMonitor.observe` meets them."""
    found = iter(update_all([(det, values, indices) for sig, values, indices in pending
                             for det in sig.seq]))
    out: list[list[_Alarm]] = []
    for sig, _, _ in pending:
        alarms = [(j, order, det, f) for order, det in enumerate(sig.seq)
                  for j, f in next(found)]
        alarms.sort(key=lambda a: (a[0], a[1]))
        out.append(alarms)
    return out


class StreamMonitor:
    """All detectors of one stream; see the module docstring.

    ``reference`` seeds the monitor with frozen references (e.g. the previous model version's
    :meth:`reference_snapshot`); signals it lacks collect their own from this stream's first
    events. A snapshot whose signal kind or embedding settings differ from ``settings`` is
    refused with :class:`~driftscope_llm.services.errors.StateMismatchError`.

    ``budget_share`` is the part of the model's false-alarm budget this stream spends (see
    :func:`~driftscope_llm.services.drift.calibration.split_budget`); it is saved with the state.
    """

    def __init__(self, settings: DriftSettings, key: StreamKey, *,
                 reference: ReferenceSnapshot | None = None, budget_share: float = 1.0) -> None:
        self.settings = settings
        self.key = key
        self.budget_share = budget_share
        self._budgets: dict[tuple[str, str], Budget] = split_budget(settings, budget_share)
        self._test_every = settings.test_every
        self._min_window = settings.min_window
        self._n_events = 0
        self._seeded = reference is not None
        self._source = None if reference is None else reference.source
        self._ref_events = 0 if reference is None else reference.n_events
        self._signals = {n: _Signal(n, c) for n, c in sorted(settings.signals.items())}
        if reference is not None:
            for name, ref in reference.signals.items():
                sig = self._signals.get(name)
                if sig is not None:
                    self._check_reference(sig, ref)
                    self._freeze(sig, ref)

    # -- properties -------------------------------------------------------------------------

    @property
    def n_events(self) -> int:
        """Events observed so far (the next event's index)."""
        return self._n_events

    @property
    def is_reference_ready(self) -> bool:
        """True once the reference phase is over (or a snapshot seeded the monitor)."""
        return self._seeded or self._n_events >= self.settings.reference_size

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Per signal: observed, missing, non_finite and invalid value counts."""
        return {n: dict(s.counts) for n, s in self._signals.items()}

    # -- the hot path -----------------------------------------------------------------------

    def observe(self, obs: Observation) -> list[Anomaly]:
        """Take one event; return the anomalies its arrival raised (usually none)."""
        index = self._n_events
        self._n_events = index + 1
        out: list[Anomaly] = []
        signals = self._signals
        for name, raw in obs.values.items():
            sig = signals.get(name)
            if sig is None:
                continue
            if raw is None:
                sig.counts["missing"] += 1
                continue
            value: Any = raw
            fast = type(value) is sig.fast_type  # the common case goes without a call
            if fast and sig.continuous:
                fast = -MAX_ABS <= value <= MAX_ABS
            if not fast:
                value = self._coerce(sig, raw)
                if value is None:
                    continue
            sig.counts["observed"] += 1
            if sig.window is None:
                self._collect(sig, value, index)
            else:
                self._monitor(sig, value, obs.event_id, obs.ts, index, out)
        if index + 1 == self.settings.reference_size:
            for sig in signals.values():
                self._maybe_freeze(sig)
        return out

    def observe_batch(self, batch: ObservationBatch) -> list[Anomaly]:
        """Take consecutive events at once; the same anomalies, in the same order, and the same
        state as :meth:`observe` on each of them in turn.

        Signals do not interact inside a monitor, so each column is taken whole: checked with
        array operations (:mod:`~driftscope_llm.services.drift.columns`), its reference phase
        value by value, then every sequential detector of every signal over whole arrays at
        once (:func:`~driftscope_llm.services.drift.sequential.update_all`), then its window
        extended slice by slice up to each event at which an alarm or a test round falls, where
        they run as in :meth:`observe`. Embeddings go value by value. The anomalies are then
        put in :meth:`observe`'s order: by event, signals in column order, detectors in theirs.
        """
        n = len(batch)
        if n == 0:
            return []
        for name, column in batch.values.items():
            if len(column) != n:
                raise ValueError(f"column {name!r} has {len(column)} values for {n} events")
        start = self._n_events
        raised: dict[str, list[tuple[int, Anomaly]]] = {}  # per signal: (batch offset, anomaly)
        pending: list[tuple[_Signal, Any, IntArray]] = []  # (signal, values, indices) to monitor
        for name, column in batch.values.items():
            sig = self._signals.get(name)
            if sig is None:
                continue
            raised[name] = []
            if sig.kind is SignalKind.EMBEDDING:
                self._embedding_column(sig, column, batch, start, raised[name])
                continue
            rest = self._column(sig, coerce_column(sig.kind, column), batch, start)
            if rest is not None:
                pending.append((sig, rest[0], rest[1] + start))
        plan_rounds([(sig.gate, sig.window, values) for sig, values, _ in pending
                     if sig.gate is not None and sig.window is not None and sig.tests
                     and sig.kind is SignalKind.CONTINUOUS], self._test_every)
        for (sig, values, indices), alarms in zip(pending, _sequential_alarms(pending),
                                                  strict=True):
            self._walk(sig, values, indices, alarms, batch, start, raised[sig.name])
        self._n_events = start + n
        boundary = self.settings.reference_size - 1 - start
        if 0 <= boundary < n:  # the end of the reference phase, for signals without a column
            for name, sig in self._signals.items():
                if name not in raised:
                    self._maybe_freeze(sig)
        # observe's order: by event, then signals in column order, detectors in their order
        tagged = [(off, pos, a) for pos, found in enumerate(raised.values()) for off, a in found]
        tagged.sort(key=lambda item: (item[0], item[1]))
        return [a for _, _, a in tagged]

    def _embedding_column(self, sig: _Signal, column: Any, batch: ObservationBatch, start: int,
                          tagged: list[tuple[int, Anomaly]]) -> None:
        """Embeddings value by value, exactly as :meth:`observe` takes them."""
        boundary = self.settings.reference_size - 1 - start
        for j, raw in enumerate(column):
            index = start + j
            if raw is None:
                sig.counts["missing"] += 1
            else:
                value = self._coerce(sig, raw)
                if value is not None:
                    sig.counts["observed"] += 1
                    if sig.window is None:
                        self._collect(sig, value, index)
                    else:
                        out: list[Anomaly] = []
                        self._monitor(sig, value, batch.event_ids[j], batch.ts[j], index, out)
                        tagged.extend((j, a) for a in out)
            if j == boundary:
                self._maybe_freeze(sig)

    def _column(self, sig: _Signal, col: Column, batch: ObservationBatch,
                start: int) -> tuple[Any, IntArray] | None:
        """Take a checked scalar column's counts and its reference phase (value by value);
        return the values (and their batch offsets) left for monitoring, if any."""
        if sig.window is not None:  # monitoring already: nothing to interleave
            for reason in (MISSING, NON_FINITE, INVALID):
                sig.counts[reason] += col.counts[reason]
            sig.counts["observed"] += len(col.offsets)
            return (col.values, col.offsets) if len(col.offsets) else None
        sig.counts[MISSING] += col.counts[MISSING]
        offsets = col.offsets.tolist()
        sig.counts["observed"] += len(offsets)
        rejected, r = col.rejected, 0

        def count_rejected(upto: int) -> None:  # as the events go: a freeze records them
            nonlocal r
            while r < len(rejected) and rejected[r][0] <= upto:
                sig.counts[rejected[r][1]] += 1
                r += 1

        boundary = self.settings.reference_size - 1 - start
        j = 0
        while sig.window is None and j < len(offsets):
            off = offsets[j]
            if 0 <= boundary < off:  # the reference phase ended before this value
                count_rejected(boundary)
                self._maybe_freeze(sig)
                boundary = -1
                if sig.window is not None:
                    break
            count_rejected(off)
            self._collect(sig, col.scalar(sig.kind, j), start + off)
            if off == boundary:
                self._maybe_freeze(sig)
                boundary = -1
            j += 1
        if sig.window is None and 0 <= boundary < len(batch):
            count_rejected(boundary)
            self._maybe_freeze(sig)
        count_rejected(len(batch))
        if sig.window is None or j == len(offsets):
            return None
        return col.values[j:], col.offsets[j:]

    def _walk(self, sig: _Signal, values: Any, indices: IntArray,
              alarms: list[_Alarm],
              batch: ObservationBatch, start: int, tagged: list[tuple[int, Anomaly]]) -> None:
        """Extend the window up to each alarm of a sequential detector (``(position, detector
        order, detector, finding)``, in order) and each test round, and raise or test there
        as :meth:`observe` does."""
        window = sig.window
        assert window is not None
        ids, ts = batch.event_ids, batch.ts
        idx = indices.tolist()
        k, cur, a = len(idx), 0, 0
        first = idx[0] - start
        contiguous = idx[-1] - idx[0] == k - 1  # no gaps: offsets are first, first + 1, ...
        offs: Sequence[int] = (range(first, first + k) if contiguous
                               else (indices - start).tolist())
        while cur < k:
            stop = k - 1
            if sig.tests:  # the value after which the next test round is due
                need = max(self._test_every - window.new_since_test,
                           self._min_window - len(window), 1)
                stop = min(stop, cur + need - 1)
            if a < len(alarms):
                stop = min(stop, alarms[a][0])
            chunk_ids = (ids[offs[cur] : offs[stop] + 1] if contiguous
                         else [ids[o] for o in offs[cur : stop + 1]])
            window.extend(values[cur : stop + 1], chunk_ids, idx[cur : stop + 1])
            off, index = offs[stop], idx[stop]
            out: list[Anomaly] = []
            while a < len(alarms) and alarms[a][0] == stop:
                _, _, det, finding = alarms[a]
                if index >= sig.cooldown_until[det.name]:
                    out.append(self._raise(sig, det, finding, ids[off], ts[off], index))
                a += 1
            if window.new_since_test >= self._test_every and sig.tests and (
                    len(window) >= self._min_window):
                self._run_tests(sig, ids[off], ts[off], index, out)
            tagged.extend((off, x) for x in out)
            cur = stop + 1

    @staticmethod
    def _coerce(sig: _Signal, raw: Any) -> Any:
        """The kind's value rule; ``None`` (after counting why) when the value is refused."""
        dim = None
        if isinstance(sig.reference, EmbeddingReference):
            dim = sig.reference.dim
        elif sig.collector is not None:
            dim = sig.collector.dim
        reason, value = coerce(sig.kind, raw, dim)
        if reason is not None:
            sig.counts[reason] += 1
            return None
        return value

    def _collect(self, sig: _Signal, value: Any, index: int) -> None:
        assert sig.collector is not None
        sig.collector.add(value)
        if index + 1 >= self.settings.reference_size:
            self._maybe_freeze(sig)

    def _monitor(self, sig: _Signal, value: Any, event_id: str, ts: float, index: int,
                 out: list[Anomaly]) -> None:
        window = sig.window
        assert window is not None
        kind = sig.kind
        if kind is SignalKind.CONTINUOUS:
            item: Any = value
        elif kind is SignalKind.BOOLEAN:
            item = value = 1.0 if value else 0.0
        elif kind is SignalKind.EMBEDDING:
            ref = sig.reference
            assert isinstance(ref, EmbeddingReference)
            item = (ref.project(value), int(ref.assign(value[None, :])[0]))
        else:
            item = value
        window.append(item, event_id, index)
        for det in sig.seq:
            finding = det.update(value, index)
            if finding is not None:
                det.rearm()
                if index >= sig.cooldown_until[det.name]:
                    out.append(self._raise(sig, det, finding, event_id, ts, index))
        if window.new_since_test >= self._test_every and sig.tests and (
                len(window) >= self._min_window):
            self._run_tests(sig, event_id, ts, index, out)

    def _run_tests(self, sig: _Signal, event_id: str, ts: float, index: int,
                   out: list[Anomaly]) -> None:
        window = sig.window
        assert window is not None and sig.reference is not None
        window.new_since_test = 0
        active = [d for d in sig.tests if index >= sig.cooldown_until[d.name]]
        if not active:
            return
        view = WindowView(sig.config, sig.reference, window)
        gate = sig.gate
        if gate is not None and gate.certainly_below(view):  # the cheap form of the next line
            return
        if not view.effect.passes:  # no window test can raise: skip them all
            return
        for det in active:
            finding = det.test(view, index)
            if finding is not None:
                out.append(self._raise(sig, det, finding, event_id, ts, index, view))

    def _raise(self, sig: _Signal, det: Detector, finding: Finding, event_id: str, ts: float,
               index: int, view: WindowView | None = None) -> Anomaly:
        assert sig.reference is not None and sig.window is not None
        if view is None:
            view = WindowView(sig.config, sig.reference, sig.window)
        sig.cooldown_until[det.name] = index + 1 + self.settings.cooldown_events
        sig.alarms[det.name] += 1
        exemplars = select_exemplars(sig.kind, sig.reference, sig.window,
                                     self.settings.n_exemplars, finding.direction,
                                     finding.focus, finding.change_index)
        details = dict(finding.details)
        if finding.focus is not None:
            details["focus"] = finding.focus
        return Anomaly(
            key=self.key, event_id=event_id, ts=ts, event_index=index, signal=sig.name,
            detector=det.name, statistic=finding.statistic, threshold=finding.threshold,
            effect_size=finding.effect_size, effect_unit=finding.effect_unit,
            direction=finding.direction, p_value=finding.p_value, exemplars=exemplars,
            reference_summary=sig.reference.summary(),
            window_summary={**view.summary(), **finding.window_summary},
            change_index=finding.change_index, details=details,
        )

    # -- reference ----------------------------------------------------------------------------

    def _maybe_freeze(self, sig: _Signal, minimum: int | None = None) -> None:
        c = sig.collector
        if minimum is None:
            minimum = self.settings.min_reference_for(sig.name)
        if c is None or c.n < minimum:
            return
        c.non_finite, c.invalid = sig.counts[NON_FINITE], sig.counts[INVALID]
        seed = derived_seed(self.settings, self.key, sig.name, "reference")
        self._freeze(sig, c.build(self.settings, seed))

    def _check_reference(self, sig: _Signal, ref: SignalReference) -> None:
        if reference_kind(ref) is not sig.kind:
            raise StateMismatchError(
                f"reference for {sig.name!r} is {reference_kind(ref)}, settings say {sig.kind}")
        if isinstance(ref, EmbeddingReference) and (
                ref.components != self.settings.embedding_components
                or ref.clusters != self.settings.embedding_clusters):
            raise StateMismatchError(
                f"embedding reference for {sig.name!r} was fitted with other settings")

    def _context(self, sig: _Signal, det: str) -> DetectorContext:
        assert sig.reference is not None
        return DetectorContext(sig.name, sig.config, self.settings, sig.reference,
                               self._budgets[(sig.name, det)],
                               derived_seed(self.settings, self.key, sig.name, det))

    def _freeze(self, sig: _Signal, ref: SignalReference,
                det_states: Mapping[str, Any] | None = None) -> None:
        sig.reference = ref
        sig.collector = None
        sig.window = SignalWindow(sig.kind, self.settings.window_for(sig.name))
        sig.gate = EffectGate(sig.config, ref)
        sig.seq, sig.tests = [], []
        for name in sig.config.detectors:
            cls = detector_class(name)
            ctx = self._context(sig, name)
            det = cls(ctx) if det_states is None else cls.from_state(ctx, det_states[name])
            if isinstance(det, SequentialDetector):
                sig.seq.append(det)
            else:
                assert isinstance(det, WindowDetector)
                sig.tests.append(det)

    def freeze_reference(self) -> ReferenceSnapshot | None:
        """End the reference phase now, before ``reference_size`` events (a rollout began).

        Signals with at least ``min_reference_values`` values (the global minimum, below any
        per-signal override: a rollout is compared with what the previous version has) freeze
        what they collected; the others keep collecting. Returns :meth:`reference_snapshot`
        (``None`` when no signal had enough values). Reference sizes enter every threshold's
        calibration, so a short reference costs delay, never false alarms.
        """
        if self.is_reference_ready:
            return self.reference_snapshot()
        for sig in self._signals.values():
            self._maybe_freeze(sig, self.settings.min_reference_values)
        if all(s.reference is None for s in self._signals.values()):
            return None
        self._ref_events = self._n_events
        self._seeded = True
        return self.reference_snapshot()

    def reference_snapshot(self) -> ReferenceSnapshot | None:
        """The frozen references (``None`` before any signal's reference is frozen)."""
        refs = {n: s.reference for n, s in self._signals.items() if s.reference is not None}
        if not refs:
            return None
        n = self._ref_events if self._seeded else min(self._n_events,
                                                       self.settings.reference_size)
        return ReferenceSnapshot(signals=refs, n_events=n, source=self.key)

    # -- metrics --------------------------------------------------------------------------------

    def summary(self) -> MonitorSummary:
        """Per signal: state, counts, reference vs window summary, and per detector its latest
        statistic, threshold, p-value, alarm count and whether it is cooling down."""
        return MonitorSummary(self.key, self._n_events, self.is_reference_ready,
                              {name: self._signal_summary(sig)
                               for name, sig in self._signals.items()})

    def _signal_summary(self, sig: _Signal) -> SignalSummary:
        if sig.reference is None or sig.window is None:
            return SignalSummary(sig.kind, "collecting", dict(sig.counts),
                                 0 if sig.collector is None else sig.collector.n)
        window: dict[str, Any] = {"n": 0}
        effect = None
        if len(sig.window):
            view = WindowView(sig.config, sig.reference, sig.window)
            window = view.summary()
            effect = EffectSummary(view.effect.size, view.effect.unit, sig.config.min_effect)
            for t in sig.tests:
                t.refresh(view)
        detectors = {d.name: DetectorSummary(
            **d.status(), alarms=sig.alarms[d.name],
            cooling_down=self._n_events <= sig.cooldown_until[d.name],
            disabled=d.calibration.get("disabled")) for d in sig.detectors}
        return SignalSummary(sig.kind, "monitoring", dict(sig.counts), 0,
                             sig.reference.summary(), window, effect, detectors)

    # -- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state; :meth:`from_state` restores it exactly."""
        sigs: dict[str, Any] = {}
        for name, s in self._signals.items():
            sigs[name] = {
                "counts": dict(s.counts), "alarms": dict(s.alarms),
                "cooldown_until": dict(s.cooldown_until),
                "collector": None if s.collector is None else s.collector.state_dict(),
                "reference": None if s.reference is None else s.reference.to_dict(),
                "window": None if s.window is None else s.window.state_dict(),
                "detectors": {d.name: d.state_dict() for d in s.detectors},
            }
        return {"format": STATE_FORMAT, "settings_fingerprint": self.settings.fingerprint(),
                "key": self.key.to_dict(), "budget_share": self.budget_share,
                "n_events": self._n_events, "seeded": self._seeded,
                "reference_events": self._ref_events,
                "source": None if self._source is None else self._source.to_dict(),
                "signals": sigs}

    @classmethod
    def from_state(cls, settings: DriftSettings, state: Mapping[str, Any]) -> StreamMonitor:
        """Restore a monitor saved by :meth:`state_dict` under the same settings."""
        if state.get("format") != STATE_FORMAT:
            raise StateMismatchError(f"unknown drift state format {state.get('format')!r}")
        if state.get("settings_fingerprint") != settings.fingerprint():
            raise StateMismatchError("drift state was saved under different settings")
        try:
            mon = cls(settings, StreamKey.from_dict(state["key"]),
                      budget_share=float(state.get("budget_share", 1.0)))
            mon._n_events = int(state["n_events"])
            mon._seeded = bool(state["seeded"])
            mon._ref_events = int(state["reference_events"])
            src = state.get("source")
            mon._source = None if src is None else StreamKey.from_dict(src)
            for name, s in state["signals"].items():
                mon._restore_signal(mon._signals[name], s)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, StateMismatchError):
                raise
            raise StateMismatchError(f"malformed drift state: {exc!r}") from exc
        return mon

    def _restore_signal(self, sig: _Signal, s: Mapping[str, Any]) -> None:
        sig.counts = {k: int(v) for k, v in s["counts"].items()}
        sig.alarms = {k: int(v) for k, v in s["alarms"].items()}
        sig.cooldown_until = {k: int(v) for k, v in s["cooldown_until"].items()}
        if s["reference"] is None:
            sig.collector = ReferenceCollector.from_state(sig.kind, s["collector"])
            return
        self._freeze(sig, reference_from_dict(s["reference"]), s["detectors"])
        sig.window = SignalWindow.from_state(sig.kind, s["window"])

