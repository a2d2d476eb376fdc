"""The regression gate's decision: the production detectors, with the baseline as the reference.

How a verdict is reached (``docs/regression.md`` has the long form):

1. Both sides' generations become :class:`~driftscope_llm.services.schemas.OutputEvent` s and
   go through the collector's
   :class:`~driftscope_llm.services.collector.signals.SignalExtractor` — the same per-event
   signals production is monitored on (logprob mean/min/low share, entropy, lengths, refusal, finish
   reason). A signal is *tested* when the baseline measured it on at least
   :data:`MIN_REFERENCE` generations and the candidate on at least :data:`MIN_WINDOW`.
2. For each tested signal the baseline's values are frozen into a reference
   (:class:`~driftscope_llm.services.drift.reference.ReferenceCollector`) that seeds a
   :class:`~driftscope_llm.services.drift.StreamMonitor` running that signal's configured detectors
   (KS and the rank CUSUM for continuous signals, Fisher's exact test and the Bernoulli CUSUM for
   refusals, the exact chi-square test for finish reasons). The candidate's values enter it in a
   seeded random order — the sequential detectors assume exchangeable arrivals, and probes come in
   blocks — and the window is sized to hold all of them, so the window tests run exactly once, on
   the last value.
3. **False-alarm level.** The gate's level ``α`` (``false_alarm_rate``, default 0.01) is the
   probability that two models with the same behaviour fail it. It is split Bonferroni-style over
   the ``J`` (signal, detector) pairs tested: each window test runs at ``α/J``, and each sequential
   detector gets the in-control run length ``J·n/α`` for its ``n`` values, so it alarms with
   probability at most about ``α/J`` over the run. The monitor's own budget arithmetic
   (:func:`~driftscope_llm.services.drift.split_budget`) does this once the per-monitor budget is
   set to ``α/J · J_s · 100 000 / n`` (``J_s`` pairs on the signal). Pooling every probe's samples
   into one sample makes the tests conservative (probes are strata of equal size on both sides).
4. **Minimum effect.** A window test raises only when the effect (Wasserstein-1 in reference
   standard deviations, rate difference, total variation) reaches the signal's ``min_effect``;
   the CUSUMs are tuned to it. So a significant but tiny change passes.
5. **Direction.** A raised signal fails the gate when it moved in its *harmful* direction
   (:data:`FAIL_ON`: less confident tokens, more refusals, any change of length or finish
   reasons); a significant move the other way (a fine-tune that made the model more sure of
   itself) is reported as ``changed`` and does not fail. ``fail_on`` overrides it per signal
   (``any`` fails on both directions).
6. The verdict is ``regression`` when any signal failed, else ``pass``.

Per probe the gate reports, descriptively, each signal's effect between the probe's own baseline
and candidate samples, in the same unit as the suite effect. A probe *fails* (JUnit) when the
suite regressed on a signal and the probe moved on that signal by at least its minimum effect, in
the alarm's direction; the suite decision is the only statistical test.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.drift import (
    DEFAULT_SIGNALS,
    DriftSettings,
    Observation,
    ReferenceSnapshot,
    SignalConfig,
    SignalKind,
    SignalSummary,
    StreamKey,
    StreamMonitor,
)
from driftscope_llm.services.drift.effects import continuous_scale, shares_tv, wasserstein1
from driftscope_llm.services.drift.reference import (
    ContinuousReference,
    ReferenceCollector,
    SignalReference,
    coerce,
)
from driftscope_llm.services.regress.errors import GateInputError
from driftscope_llm.services.regress.generation import Sample
from driftscope_llm.services.regress.probes import Probe
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.vocabulary import Signal

__all__ = [
    "FAIL_ON",
    "GATE_SIGNALS",
    "GateResult",
    "GateSettings",
    "ProbeResult",
    "SignalDecision",
    "events_for",
    "run_gate",
]

MIN_REFERENCE = 20
"""Fewest baseline values a signal needs to be tested (the monitor's smallest reference)."""
MIN_WINDOW = 10
"""Fewest candidate values a signal needs to be tested (the monitor's smallest window)."""

_NOT_COMPARABLE = (Signal.LATENCY_MS, Signal.CONFIDENCE, Signal.EMBEDDING)
GATE_SIGNALS: dict[str, SignalConfig] = {
    k: v for k, v in DEFAULT_SIGNALS.items() if k not in _NOT_COMPARABLE}
"""Production's default signals and minimum effects, less latency (it measures the machine the
gate runs on, not the model), the gateway's own confidence score (generations have none) and
embeddings (the embedder is optional; a settings file can add the signal back only when events
carry one — the gate computes none)."""


FAIL_ON: dict[str, Literal["increase", "decrease", "any"]] = {
    Signal.LOGPROB_MEAN: "decrease", Signal.LOGPROB_MIN: "decrease",
    Signal.LOW_LOGPROB_SHARE: "increase", Signal.ENTROPY_MEAN: "increase",
    Signal.REFUSAL: "increase", Signal.LENGTH_CHARS: "any", Signal.LENGTH_TOKENS: "any",
    Signal.FINISH_REASON: "any",
}
"""The direction in which a significant change of each signal is a regression (unlisted: any)."""


class GateSettings(BaseModel):
    """What the gate tests and at which level; saved in every result (``settings``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    false_alarm_rate: float = Field(
        default=0.01, gt=0, lt=0.5,
        description="Probability that two models with the same behaviour fail the gate.")
    signals: dict[str, SignalConfig] = Field(
        default_factory=lambda: dict(GATE_SIGNALS),
        description="Signal name -> detectors and minimum effect (production's defaults).")
    fail_on: dict[str, Literal["increase", "decrease", "any"]] = Field(
        default_factory=lambda: dict(FAIL_ON),
        description="Signal -> the direction of change that fails the gate (unlisted: any).")
    seed: int = Field(default=0, description="Seeds the candidate's arrival order and the "
                                             "detectors' reference draws.")
    permutations: int = Field(default=999, ge=19,
                              description="Permutation confirmations of approximate tests.")

    @classmethod
    def from_drift(cls, drift: DriftSettings, **kw: Any) -> GateSettings:
        """The signals (detectors, minimum effects) of production drift settings."""
        signals = {k: v for k, v in drift.signals.items() if k not in _NOT_COMPARABLE}
        return cls(signals=signals, permutations=drift.permutations, **kw)


@dataclass(frozen=True)
class DetectorDecision:
    """One detector's last statistic, threshold and p-value on the candidate, and whether it
    raised (``disabled`` says why a detector could not run, e.g. a constant reference)."""

    name: str
    raised: bool
    statistic: float | None
    threshold: float | None
    p_value: float | None
    disabled: str | None


@dataclass(frozen=True)
class SignalDecision:
    """The suite-level decision on one signal."""

    signal: str
    kind: str
    decision: str  # "regression" | "changed" | "pass" | "not_tested"
    reason: str
    n_baseline: int
    n_candidate: int
    effect: float | None = None
    effect_unit: str | None = None
    min_effect: float | None = None
    direction: str | None = None
    baseline: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)
    detectors: list[DetectorDecision] = field(default_factory=list)


@dataclass(frozen=True)
class ProbeResult:
    """One probe: per-signal effect (in min-effect multiples), its outputs, and its test case."""

    probe: Probe
    effects: dict[str, float]
    moved: list[str]
    failed_on: list[str]
    baseline: list[Sample]
    candidate: list[Sample]

    @property
    def failed(self) -> bool:
        return bool(self.failed_on)

    @property
    def change(self) -> float:
        """The largest effect on any signal, in multiples of that signal's minimum effect."""
        return max(self.effects.values(), default=0.0)


@dataclass(frozen=True)
class GateResult:
    """Everything a verdict rests on; the CLI renders it as text, JSON, HTML and JUnit."""

    verdict: str  # "pass" | "regression"
    settings: GateSettings
    pairs: int
    per_pair_alpha: float
    signals: list[SignalDecision]
    probes: list[ProbeResult]

    def most_changed(self, n: int = 10) -> list[ProbeResult]:
        """Failed probes first, then by their largest effect."""
        return sorted(self.probes, key=lambda p: (not p.failed, -p.change, p.probe.id))[:n]


_T0 = datetime(2025, 1, 1, tzinfo=UTC)


def events_for(side: str, probes: Sequence[Probe], samples: Sequence[Sequence[Sample]],
               model: str = "regress") -> list[OutputEvent]:
    """OutputEvents of one side's generations (``event_id`` = ``side:probe-id:k``)."""
    out: list[OutputEvent] = []
    for probe, group in zip(probes, samples, strict=True):
        for k, s in enumerate(group):
            out.append(OutputEvent(
                event_id=f"{side}:{probe.id}:{k}", ts=_T0 + timedelta(seconds=len(out)),
                model=model, model_version=side, prompt=probe.prompt, output=s.output,
                segment={"probe": probe.id}, finish_reason=s.finish_reason,
                token_logprobs=[min(0.0, x) for x in s.token_logprobs] or None,
                top_logprobs=s.top_logprobs or None))
    return out


Values = dict[str, list[tuple[str, Any]]]  # signal -> [(probe id, value)]


def _values(events: Sequence[OutputEvent], signals: Mapping[str, SignalConfig],
            extractor: SignalExtractor) -> Values:
    out: Values = {name: [] for name in signals}
    for ev in events:
        extracted = extractor.extract(ev)
        pid = ev.segment["probe"]
        for name, cfg in signals.items():
            reason, value = coerce(cfg.kind, extracted.get(name))
            if reason is None:
                out[name].append((pid, value))
    return out


def run_gate(probes: Sequence[Probe], baseline: Sequence[Sequence[Sample]],
             candidate: Sequence[Sequence[Sample]], settings: GateSettings, *,
             signal_settings: SignalSettings | None = None) -> GateResult:
    """Decide ``pass`` or ``regression`` for ``candidate`` against ``baseline`` (module doc)."""
    for side, gens in (("baseline", baseline), ("candidate", candidate)):
        n = sum(len(g) for g in gens)
        need = MIN_REFERENCE if side == "baseline" else MIN_WINDOW
        if n < need:
            raise GateInputError(
                f"the {side} produced {n} generations; the gate needs at least {need} (add "
                "probes or raise --samples)", side=side, needed=need, got=n)
    extractor = SignalExtractor(signal_settings or SignalSettings())
    base = _values(events_for("baseline", probes, baseline), settings.signals, extractor)
    cand = _values(events_for("candidate", probes, candidate), settings.signals, extractor)
    tested = [s for s in sorted(settings.signals)
              if len(base[s]) >= MIN_REFERENCE and len(cand[s]) >= MIN_WINDOW]
    pairs = sum(len(settings.signals[s].detectors) for s in tested)
    per_pair = settings.false_alarm_rate / max(pairs, 1)
    decisions: list[SignalDecision] = []
    refs: dict[str, SignalReference] = {}
    for name in sorted(settings.signals):
        cfg = settings.signals[name]
        if name not in tested:
            decisions.append(SignalDecision(
                name, cfg.kind.value, "not_tested",
                f"measured on {len(base[name])} baseline and {len(cand[name])} candidate "
                f"generations (needs {MIN_REFERENCE} and {MIN_WINDOW})",
                len(base[name]), len(cand[name])))
            continue
        decision, refs[name] = _test_signal(name, cfg, base[name], cand[name], per_pair,
                                            settings)
        decisions.append(decision)
    verdict = "regression" if any(d.decision == "regression" for d in decisions) else "pass"
    probe_results = _per_probe(probes, baseline, candidate, base, cand, refs, settings,
                               decisions)
    return GateResult(verdict, settings, pairs, per_pair, decisions, probe_results)


def _monitor_settings(name: str, cfg: SignalConfig, n_ref: int, n_win: int, per_pair: float,
                      settings: GateSettings) -> DriftSettings:
    pairs_here = len(cfg.detectors)
    return DriftSettings(
        signals={name: cfg.model_copy(update={"window_size": None})},
        reference_size=max(MIN_REFERENCE, n_ref), min_reference_values=MIN_WINDOW,
        window_size=n_win, min_window=n_win, test_every=n_win, cooldown_events=n_win,
        max_false_alarms_per_100k=per_pair * pairs_here * 100_000 / n_win,
        n_exemplars=n_win, seed=settings.seed, permutations=settings.permutations)


def _test_signal(name: str, cfg: SignalConfig, base: list[tuple[str, Any]],
                 cand: list[tuple[str, Any]], per_pair: float,
                 settings: GateSettings) -> tuple[SignalDecision, SignalReference]:
    drift = _monitor_settings(name, cfg, len(base), len(cand), per_pair, settings)
    collector = ReferenceCollector(cfg.kind)
    for _, v in base:
        collector.add(v)
    key = StreamKey("regress", "candidate", name)
    ref = collector.build(drift, seed=settings.seed)
    monitor = StreamMonitor(drift, key, reference=ReferenceSnapshot({name: ref}, len(base), key))
    order = list(range(len(cand)))
    random.Random(f"{settings.seed}\x1f{name}").shuffle(order)
    raised: dict[str, Any] = {}
    for i, j in enumerate(order):
        pid, value = cand[j]
        obs = Observation(f"{pid}#{j}", float(i), {name: value})
        for anomaly in monitor.observe(obs):
            raised.setdefault(anomaly.detector, anomaly)
    summary = monitor.summary().signals[name]
    effect = summary.effect
    dets = []
    for d, st in summary.detectors.items():
        a = raised.get(d)  # a raised detector re-armed: report the values it raised with
        stat, thr, p = ((a.statistic, a.threshold, a.p_value) if a is not None else
                        (st.statistic, st.threshold, st.p_value))
        dets.append(DetectorDecision(d, a is not None, _num(stat), _num(thr), _num(p),
                                     st.disabled))
    direction = next((a.direction for a in raised.values()), None) or _direction(summary)
    harmful = settings.fail_on.get(name, "any")
    decision = "pass"
    if raised:
        ok = harmful == "any" or direction == harmful or direction == "shift"
        decision = "regression" if ok else "changed"
        reason = "raised by " + ", ".join(sorted(raised)) + (
            "" if ok else f"; a {direction} is not a regression for this signal")
    elif effect is not None and effect.size < cfg.min_effect:
        reason = "effect below the minimum"
    else:
        reason = "no detector rejected 'no change' at its level"
    return SignalDecision(
        name, cfg.kind.value, decision, reason, len(base), len(cand),
        _num(None if effect is None else effect.size), None if effect is None else effect.unit,
        cfg.min_effect, direction, dict(summary.reference or {}), dict(summary.window or {}),
        dets), ref


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(float(x)) else None


def _direction(summary: SignalSummary) -> str:
    """The window's move against the reference in mean (continuous) or rate (boolean)."""
    ref, win = summary.reference_level, summary.window_level
    if ref is None or win is None:
        return "shift"
    d = win - ref
    return "increase" if d > 0 else "decrease" if d < 0 else "shift"


def probe_effect(cfg: SignalConfig, ref: SignalReference | None, base: list[Any],
                 cand: list[Any]) -> tuple[float, str] | None:
    """One probe's effect (in ``cfg.min_effect`` multiples) and direction, or ``None`` when a
    side has no value. Units are the suite's: continuous W1 over the suite reference's scale."""
    if not base or not cand:
        return None
    if cfg.kind is SignalKind.CONTINUOUS:
        b, c = np.sort(np.asarray(base, float)), np.sort(np.asarray(cand, float))
        scale = continuous_scale(cfg, ref) if isinstance(ref, ContinuousReference) else 1.0
        dist = wasserstein1(c, b)
        size = dist / scale if scale > 0 else (math.inf if dist > 0 else 0.0)
        delta = float(c.mean() - b.mean())
    elif cfg.kind is SignalKind.BOOLEAN:
        delta = sum(map(bool, cand)) / len(cand) - sum(map(bool, base)) / len(base)
        size = abs(delta)
    else:
        size, _, _ = shares_tv(dict(Counter(map(str, base))), dict(Counter(map(str, cand))))
        delta = 0.0
    direction = "increase" if delta > 0 else "decrease" if delta < 0 else "shift"
    return size / cfg.min_effect, direction


def _per_probe(probes: Sequence[Probe], baseline: Sequence[Sequence[Sample]],
               candidate: Sequence[Sequence[Sample]], base: Values, cand: Values,
               refs: Mapping[str, SignalReference], settings: GateSettings,
               decisions: Sequence[SignalDecision]) -> list[ProbeResult]:
    alarmed = {d.signal: d.direction for d in decisions if d.decision == "regression"}
    by_probe: dict[str, dict[str, tuple[list[Any], list[Any]]]] = {}
    for name in refs:
        for side, vals in ((0, base[name]), (1, cand[name])):
            for pid, v in vals:
                by_probe.setdefault(pid, {}).setdefault(name, ([], []))[side].append(v)
    out = []
    for probe, b, c in zip(probes, baseline, candidate, strict=True):
        effects: dict[str, float] = {}
        moved: list[str] = []
        failed: list[str] = []
        for name, (bv, cv) in sorted(by_probe.get(probe.id, {}).items()):
            pe = probe_effect(settings.signals[name], refs.get(name), bv, cv)
            if pe is None:
                continue
            size, direction = pe
            effects[name] = size
            if size >= 1.0:
                moved.append(name)
                if name in alarmed and alarmed[name] in (direction, "shift", None):
                    failed.append(name)
        out.append(ProbeResult(probe, effects, moved, failed, list(b), list(c)))
    return out
