"""Drift detection on DEFAULT settings, end to end, against river and scipy baselines.

    python -m benchmarks.drift_benchmark [--quick] [--markdown] [--runs N] [--workers N]

Each run is one model's traffic: four routes (``segment = {"route": ...}``) in equal shares,
every collector signal per event (:mod:`benchmarks.scenarios`; embeddings on a quarter of the
events, the embedder's default sampling rate), fed through the collector's own
:class:`~driftscope_llm.services.collector.pipeline.Pipeline` with **default** settings and no
configuration: ``DriftSettings()``, ``SegmentSettings()`` (streams from the route label plus the
model-level stream, one false-alarm budget per model), incidents in the in-memory store. Signal
values are planted directly (``Pipeline.process_values``), so what is measured is detection, not
signal extraction.

Scenarios (change at model event ``change_at``; the planted change is global unless it names a
route):

* confidence drop: the latent quality drops by one standard deviation, abruptly or over 2500
  events; also in the billing route only (segment-only);
* refusal spike 2 % → 6 % in the billing route only (segment-only);
* outputs 30 % longer;
* a new topic, unlike any the reference saw, in 10 %, 20 % or 35 % of outputs;
* rollout after a short previous version: v1 runs for only 800 events (fewer than the default
  reference of 1000), then v2 refuses 6 % instead of 2 % from its first event;
* no drift, for the false-alarm rate.

Baselines, run in the same process on the same values of every stream the pipeline runs (the
model-level stream and each route's; a baseline is credited with its earliest alarm on any of
them): river's ``ADWIN`` with its defaults on every scalar signal (booleans as 0/1, embeddings
as their coordinate on the reference's first principal direction), and scipy's ``ks_2samp`` /
``chi2_contingency`` on consecutive windows of 500 values against the stream's first 1000
values (the default reference size; in the rollout, at most the previous version's values), at
α = 0.05 (embeddings: ``ks_2samp`` per coordinate at α/d).

Delay: model events (all routes) from the change to the first alarm on a signal the change
moves; a run without one is a miss. Incidents: distinct incidents the change's anomalies
landed in (opened or updated from the change on: a version's open incident absorbs new facets,
so a change that follows an earlier alarm of the same version updates that incident). False
alarms: anomalies on the no-drift runs, all streams, signals and detectors, per 100 000 model
events.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from river import drift as river_drift
from scipy import stats

from benchmarks.scenarios import CHANGE_SIGNALS, Change, generate, make_world
from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline
from driftscope_llm.services.collector.segments import MODEL_STREAM, SegmentKeyer, SegmentSettings
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.drift import (
    DriftSettings,
    Observation,
    ObservationBatch,
    StreamKey,
    StreamMonitor,
)
from driftscope_llm.services.drift.calibration import split_budget
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.store import MemoryStore

ROUTES = ("billing", "shipping", "account", "tech")
BASELINES = ("river ADWIN", "scipy windows (α=0.05)", "scipy windows (α matched)")
SCIPY_WINDOW = 500


def matched_alpha(settings: DriftSettings | None = None) -> float:
    """The scipy windows' level at which they spend the product's false-alarm budget.

    Each model event enters two of the baseline's streams (the model-level one and its route's);
    in each, every signal is tested once per ``SCIPY_WINDOW`` values. Bonferroni over those tests
    (as the product's own split does) gives at most ``max_false_alarms_per_100k`` false alarms
    per 100 000 model events at ``α = budget · window / (2 · signals)``: the same baseline, held
    to the same false-alarm rate as driftscope.
    """
    s = settings or DriftSettings()
    budget = s.max_false_alarms_per_100k / 100_000.0
    return budget * SCIPY_WINDOW / (2 * len(s.signals))


def bernoulli_kl(p1: float, p0: float) -> float:
    """KL(Bernoulli(p1) ‖ Bernoulli(p0)) in nats: the evidence one event carries."""
    return p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))


def lorden_bound(p0: float, p1: float, share: float, route_share: float,
                 settings: DriftSettings | None = None) -> tuple[float, float]:
    """Lorden's (1971) asymptotic lower bound, ``ln(ARL) / KL``, on the mean detection delay
    (in model events) of a rate change ``p0 → p1`` in a stream that holds ``route_share`` of
    the model's events. Two figures: (1) a detector given the model's *whole* budget, watching
    nothing else: no combination of detectors under one budget is faster on average; (2) one
    (signal, detector) pair of a stream that holds ``share`` of the budget under the default
    split (one budget over every signal and detector of the stream; two sides share a pair's)."""
    s = settings or DriftSettings()
    kl = bernoulli_kl(p1, p0)
    per_model_event = s.max_false_alarms_per_100k / 100_000.0
    whole = math.log(1.0 / (per_model_event / route_share)) / kl / route_share
    pair = next(iter(split_budget(s, share).values()))
    split = math.log(2.0 * pair.arl) / kl / route_share
    return whole, split
_T0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Scenario:
    name: str
    change: Change | None
    route: str | None = None  # the only route that changes; None = all
    v1_events: int = 0  # > 0: a rollout, v2 starts at this model event


@dataclass(frozen=True)
class Task:
    scenario: Scenario
    run: int
    length: int
    change_at: int


@dataclass
class RunResult:
    task: Task
    first: dict[str, int | None] = field(default_factory=dict)  # label -> first detection
    incidents: int = 0
    alarms: dict[str, int] = field(default_factory=dict)  # label -> alarms (no-drift runs)
    seconds_ours: float = 0.0
    events: int = 0


def scenarios(change_at: int) -> list[Scenario]:
    return [
        Scenario("confidence drop (abrupt)", Change("confidence", change_at, -1.0)),
        Scenario("confidence drop (gradual)", Change("confidence", change_at, -1.0, ramp=2500)),
        Scenario("confidence drop, billing only", Change("confidence", change_at, -1.0),
                 route="billing"),
        Scenario("refusal 2%→6%, billing only", Change("refusal", change_at, 0.06),
                 route="billing"),
        Scenario("length +30%", Change("length", change_at, 1.3)),
        Scenario("new topic in 10% of outputs", Change("new_topic", change_at, 0.10)),
        Scenario("new topic in 20% of outputs", Change("new_topic", change_at, 0.20)),
        Scenario("new topic in 35% of outputs", Change("new_topic", change_at, 0.35)),
        Scenario("rollout after a short v1 (800 events): refusal 2%→6%",
                 Change("refusal", 800, 0.06), v1_events=800),
        Scenario("no drift", None),
    ]


def model_stream(task: Task) -> list[tuple[str, str, Observation]]:
    """``(version, route, observation)`` per model event, routes in round-robin order."""
    sc = task.scenario
    world = make_world(task.run)
    per_route = -(-task.length // len(ROUTES))
    change = sc.change
    cols = []
    for route in ROUTES:
        mine = change if change is not None and sc.route in (None, route) else None
        if mine is not None:  # the route's own index of the model-level change
            mine = Change(mine.kind, mine.at // len(ROUTES), mine.size,
                          ramp=mine.ramp // len(ROUTES))
        cols.append(generate(world, per_route, hash_seed(sc.name, task.run, route), mine,
                             prefix=f"{route}-"))
    out = []
    for i in range(task.length):
        version = "v1" if sc.v1_events and i < sc.v1_events else (
            "v2" if sc.v1_events else "v1")
        out.append((version, ROUTES[i % len(ROUTES)], cols[i % len(ROUTES)][i // len(ROUTES)]))
    return out


class Baselines:
    """river ADWIN and scipy windows on the scalar view of every signal of one stream."""

    def __init__(self, ref_size: int, alpha_matched: float) -> None:
        self.ref_size = ref_size
        self.alpha_matched = alpha_matched
        self.n = 0
        self.adwin: dict[str, Any] = {}
        self.reference: dict[str, list[Any]] = defaultdict(list)
        self.window: dict[str, list[Any]] = defaultdict(list)
        self.axis: np.ndarray | None = None
        self.center: np.ndarray | None = None

    def observe(self, obs: Observation) -> list[str]:
        """Labels of the baselines that alarm on this event (any signal)."""
        index, self.n = self.n, self.n + 1
        out: list[str] = []
        for name, raw in obs.values.items():
            if raw is None:
                continue
            x: Any = 1.0 if raw is True else 0.0 if raw is False else raw
            r: Any = x
            if name == "embedding":
                if index >= self.ref_size and self.axis is None and self.reference[name]:
                    ref = np.stack(self.reference[name]).astype(np.float64)
                    self.center = ref.mean(axis=0)
                    self.axis = np.linalg.svd(ref - self.center, full_matrices=False)[2][0]
                r = (None if self.axis is None or self.center is None
                     else float((np.asarray(x, dtype=np.float64) - self.center) @ self.axis))
            if isinstance(r, float):
                det = self.adwin.get(name)
                if det is None:
                    det = self.adwin[name] = river_drift.ADWIN()
                det.update(r)
                if det.drift_detected and index >= self.ref_size:
                    out.append(BASELINES[0])
            if index < self.ref_size:
                self.reference[name].append(x)
                continue
            win = self.window[name]
            win.append(x)
            if len(win) == SCIPY_WINDOW:
                p = self._scipy_pvalue(name, win)
                if p < 0.05:
                    out.append(BASELINES[1])
                if p < self.alpha_matched:
                    out.append(BASELINES[2])
                win.clear()
        return out

    def _scipy_pvalue(self, name: str, win: list[Any]) -> float:
        """The window's p-value against the reference (embeddings: Bonferroni over the
        coordinates' KS tests, so one level serves both baselines)."""
        ref = self.reference[name]
        if len(ref) < 10:
            return 1.0
        if name == "embedding":
            a, b = np.stack(ref), np.stack(win)
            p = stats.ks_2samp(a, b, axis=0, method="asymp").pvalue
            return float(min(1.0, np.min(p) * a.shape[1]))
        if isinstance(win[0], str) or name == "refusal":
            cats = sorted(set(map(str, ref)) | set(map(str, win)))
            table = np.array([[sum(1 for v in s if str(v) == c) for c in cats]
                              for s in (ref, win)])
            if table.shape[1] < 2:
                return 1.0
            return float(stats.chi2_contingency(table).pvalue)
        return float(stats.ks_2samp(ref, win, method="asymp").pvalue)


def _event(i: int, version: str, route: str, obs: Observation) -> OutputEvent:
    return OutputEvent.model_validate({
        "event_id": f"{version}-{obs.event_id}", "ts": datetime.fromtimestamp(_T0 + i, UTC),
        "model": "bench-model", "model_version": version, "output": "",
        "segment": {"route": route}})


def run_task(task: Task) -> RunResult:
    sc = task.scenario
    rows = model_stream(task)
    pipeline = Pipeline(DriftSettings(), SignalExtractor(SignalSettings()), SegmentSettings(),
                        MemoryStore())
    state = PartitionState(topic="bench", partition=0)
    res = RunResult(task, events=task.length)
    drift = sc.change is not None
    relevant = CHANGE_SIGNALS[sc.change.kind] if sc.change is not None else frozenset()
    at = task.change_at if not sc.v1_events else sc.v1_events
    ours: int | None = None
    incidents: set[str] = set()
    alarms = 0
    t0 = time.process_time()
    for i, (version, route, obs) in enumerate(rows):
        for r in pipeline.process_values(state, [(i, _event(i, version, route, obs),
                                                  obs.values)]):
            alarms += 1
            if drift and i >= at:
                incidents.add(r.incident.id)
                if ours is None and r.anomaly.signal in relevant:
                    ours = i
    res.seconds_ours = time.process_time() - t0
    # baselines: one per stream the pipeline ran (model-level and each route)
    ref_size = DriftSettings().reference_size
    first: dict[str, int | None] = dict.fromkeys(BASELINES)
    base_alarms: dict[str, int] = dict.fromkeys(BASELINES, 0)
    streams: dict[str, Baselines] = {}
    for i, (_version, route, obs) in enumerate(rows):
        for stream in (MODEL_STREAM, route):
            b = streams.get(stream)
            if b is None:
                share = 1 if stream == MODEL_STREAM else len(ROUTES)
                limit = ref_size if not sc.v1_events else min(ref_size, sc.v1_events // share)
                b = streams[stream] = Baselines(limit, matched_alpha())
            for label in b.observe(Observation(obs.event_id, obs.ts, _relevant(obs, relevant))):
                base_alarms[label] += 1
                if drift and i >= at and first[label] is None:
                    first[label] = i
    res.first = {"driftscope": None if ours is None else ours - at,
                 **{k: None if v is None else v - at for k, v in first.items()}}
    res.incidents = len(incidents)
    res.alarms = {"driftscope": alarms, **base_alarms}
    return res


def _relevant(obs: Observation, relevant: frozenset[str]) -> dict[str, Any]:
    """The signals a baseline watches: those the change moves (every signal with no change)."""
    if not relevant:
        return dict(obs.values)
    return {k: v for k, v in obs.values.items() if k in relevant}


def hash_seed(*parts: Any) -> int:
    h = 1469598103934665603
    for ch in "|".join(map(str, parts)).encode():
        h = ((h ^ ch) * 1099511628211) % 2**64
    return h % 2**32


LABELS = ("driftscope", *BASELINES)


def markdown(results: list[RunResult], scen: list[Scenario], args: argparse.Namespace,
             throughput: dict[str, float]) -> str:
    by: dict[str, list[RunResult]] = defaultdict(list)
    for r in results:
        by[r.task.scenario.name].append(r)
    drift_sc = [s for s in scen if s.change is not None]
    lines = [
        f"One model, four routes in equal shares, {args.length} events per run, change at event "
        f"{args.change_at} (rollout: at 800), {args.runs} runs per scenario; no-drift: "
        f"{args.nodrift_runs} runs. Default settings, no configuration: streams from the route "
        "label plus the model-level stream, one budget of 1 false alarm per 100 000 events per "
        "model over all of them, embeddings on a quarter of the events.",
        "",
        "Cells: median delay in model events after the change (misses / runs); incidents: "
        "distinct incidents the change's anomalies opened or updated, per run (min–max).",
        "",
        "| scenario | driftscope | incidents per change | river ADWIN | scipy windows (α=0.05) "
        f"| scipy windows (α={matched_alpha():.1e}, the same budget) "
        "| no slower than the best of ADWIN and α=0.05 | no slower than the same-budget windows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in drift_sc:
        rs = by[s.name]
        cells = []
        meds: dict[str, float] = {}
        for label in LABELS:
            d = [r.first[label] for r in rs if r.first.get(label) is not None]
            meds[label] = float(np.median(d)) if d else float("inf")
            miss = len(rs) - len(d)
            cells.append(f"{int(meds[label])} ({miss}/{len(rs)})" if d else
                         f"never ({miss}/{len(rs)})")
        inc = [r.incidents for r in rs]
        caught = all(r.first["driftscope"] is not None for r in rs)
        best = min(meds[b] for b in BASELINES[:2])
        ok = "yes" if meds["driftscope"] <= best and caught else "**no**"
        ok_matched = "yes" if meds["driftscope"] <= meds[BASELINES[2]] and caught else "**no**"
        lines.append(f"| {s.name} | {cells[0]} | {min(inc)}–{max(inc)} | {cells[1]} | "
                     f"{cells[2]} | {cells[3]} | {ok} | {ok_matched} |")
    lines += ["", *bound_table(drift_sc, by)]
    nod = by.get("no drift", [])
    events = sum(r.events for r in nod)
    per = 1e5 / max(1, events)
    lines += [
        "",
        "False alarms on the no-drift runs (all streams, signals and detectors of the model):",
        "",
        "| detector | model events | alarms | per 100 000 events | 95 % upper bound |",
        "|---|---|---|---|---|",
    ]
    for label in LABELS:
        k = sum(r.alarms.get(label, 0) for r in nod)
        lines.append(f"| {label} | {events} | {k} | {k * per:.2f} | "
                     f"{poisson_upper(k) * per:.2f} |")
    secs = sum(r.seconds_ours for r in results)
    stream_events = sum(r.events for r in results) * 2  # model-level + one route per event
    lines += [
        "",
        "Throughput (CPU seconds of one process, same events, measured in this run): "
        f"StreamMonitor with the default settings on the ten scalar signals "
        f"{throughput['ours']:,.0f} events/s one event at a time and "
        f"{throughput['ours_batch']:,.0f} events/s in batches of 500 (`observe_batch`, as the "
        f"collector feeds it); river ADWIN on the same ten signals "
        f"{throughput['adwin']:,.0f} events/s "
        f"(ratios {throughput['ours'] / throughput['adwin']:.2f} and "
        f"{throughput['ours_batch'] / throughput['adwin']:.2f}). "
        "The whole default pipeline with embeddings in the runs above: "
        f"{stream_events / max(1e-9, secs):,.0f} stream-events/s "
        f"({sum(r.events for r in results) / max(1e-9, secs):,.0f} model events/s, each feeding "
        "two streams).",
    ]
    return "\n".join(lines)


def bound_table(drift_sc: list[Scenario], by: dict[str, list[RunResult]]) -> list[str]:
    """Lorden's bound for the scenarios whose change is one Bernoulli signal's rate."""
    keyer = SegmentKeyer(SegmentSettings())
    lines = [
        "Information bound (Lorden 1971) for the changes that move one signal only, a refusal "
        "rate 2 % → 6 % (KL = "
        f"{bernoulli_kl(0.06, 0.02):.4f} nats per event): a detector whose run length without "
        "drift is ARL needs about ln(ARL) / KL events after the change, on average and "
        "asymptotically (a guide at these sizes, not a theorem: a median can fall a little "
        "below it). Model events:",
        "",
        "| scenario | stream that sees the change | bound, the model's whole budget on this one "
        "signal | bound, one detector of the default split | driftscope (median) "
        "| scipy windows (α=0.05) |",
        "|---|---|---|---|---|---|",
    ]
    for s in drift_sc:
        if s.change is None or s.change.kind != "refusal":
            continue
        seg = MODEL_STREAM if s.route is None else f"route={s.route}"
        route_share = 1.0 if s.route is None else 1.0 / len(ROUTES)
        whole, split = lorden_bound(0.02, s.change.size, keyer.budget_share(seg), route_share)
        rs = by[s.name]
        med = {label: [r.first[label] for r in rs if r.first.get(label) is not None]
               for label in ("driftscope", BASELINES[1])}
        cell = {k: f"{int(np.median(v))}" if v else "never" for k, v in med.items()}
        lines.append(f"| {s.name} | {seg} | {whole:.0f} | {split:.0f} | {cell['driftscope']} | "
                     f"{cell[BASELINES[1]]} |")
    return lines


def poisson_upper(k: int, conf: float = 0.95) -> float:
    """Upper confidence bound of a Poisson mean after observing ``k`` events."""
    return float(stats.chi2.ppf(conf, 2 * (k + 1)) / 2)


def measure_throughput(events_n: int = 10_000, batch: int = 500) -> dict[str, float]:
    """Events per CPU second on the same scalar signals: the default monitor one event at a time
    (``observe``) and a poll at a time (``observe_batch``, what the collector uses), against
    river ADWIN."""
    settings = DriftSettings()
    ref = settings.reference_size
    events = generate(make_world(0), ref + events_n, 123, embed_rate=0.0)
    scalar = [k for k, v in events[0].values.items() if isinstance(v, float | bool)]
    events = [Observation(o.event_id, o.ts, {k: o.values[k] for k in scalar}) for o in events]

    def fresh() -> StreamMonitor:
        mon = StreamMonitor(settings, StreamKey("m", "v", "s"))
        for o in events[:ref]:
            mon.observe(o)
        return mon

    mon = fresh()
    t0 = time.process_time()
    for o in events[ref:]:
        mon.observe(o)
    ours = events_n / (time.process_time() - t0)
    mon = fresh()
    rest = events[ref:]
    batches = [ObservationBatch(event_ids=[o.event_id for o in chunk], ts=[o.ts for o in chunk],
                                values={k: [o.values[k] for o in chunk] for k in scalar})
               for chunk in (rest[i:i + batch] for i in range(0, len(rest), batch))]
    t0 = time.process_time()
    for b in batches:
        mon.observe_batch(b)
    ours_batch = events_n / (time.process_time() - t0)
    dets = {k: river_drift.ADWIN() for k in scalar}
    t0 = time.process_time()
    for o in rest:
        for k, det in dets.items():
            det.update(float(o.values[k]))  # type: ignore[arg-type]
    adwin = events_n / (time.process_time() - t0)
    return {"ours": ours, "ours_batch": ours_batch, "adwin": adwin}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one run per scenario, shorter streams")
    p.add_argument("--markdown", action="store_true", help="print only the markdown tables")
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--nodrift-runs", type=int, default=None)
    p.add_argument("--length", type=int, default=None, help="model events per run")
    p.add_argument("--change-at", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--only", default=None, help="run only scenarios whose name contains this")
    args = p.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.nodrift_runs = args.nodrift_runs or (2 if args.quick else 6)
    args.length = args.length or (16_000 if args.quick else 20_000)
    scen = [s for s in scenarios(args.change_at) if args.only is None or args.only in s.name]
    tasks = [Task(s, r, args.length, args.change_at) for s in scen
             for r in range(args.runs if s.change is not None else args.nodrift_runs)]
    started = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            results = progress(pool.imap_unordered(run_task, tasks), len(tasks))
    throughput = measure_throughput()
    text = markdown(results, scen, args, throughput)
    if not args.markdown:
        print(f"# drift benchmark ({time.time() - started:.0f} s wall)\n", file=sys.stderr)
    print(text)
    return 0


def progress(it: Iterable[RunResult], total: int) -> list[RunResult]:
    out = []
    for i, r in enumerate(it, 1):
        out.append(r)
        print(f"\r{i}/{total} runs", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


if __name__ == "__main__":
    sys.exit(main())
