"""Drift detectors on streams with known change points, against river and scipy baselines.

    python -m benchmarks.drift_benchmark [--quick] [--markdown] [--runs N] [--workers N]

Every stream is a synthetic LLM output stream (:mod:`benchmarks.scenarios`) with all the
collector's signals. One :class:`~services.drift.StreamMonitor` per stream runs *every*
registered detector on every signal it applies to (so the false-alarm budget is split over all
of them: the strictest split), under the default budget of one false alarm per 100 000 events
per model. In the same process, on the same values, run the baselines an operator would reach
for: river's ``ADWIN`` and ``PageHinkley`` with their defaults, fed each scalar signal from the
first event (booleans as 0/1, embeddings as their cosine distance to the reference's mean
embedding), and scipy's ``ks_2samp`` (continuous) / ``chi2_contingency`` (boolean, categorical)
on consecutive fixed windows of 500 values against the first ``reference_size`` values, at
α = 0.05.

Scenarios (change half-way between the end of the reference and the end of each stream):

* ``confidence drop``: the latent quality drops by one standard deviation, so the mean token
  logprob drops by one per-event standard deviation (abrupt), or reaches it over a quarter of
  the monitored part of the stream (gradual);
* ``refusal spike``: 2 % → 6 % in one of four segments (the others are unchanged);
* ``length change``: outputs 30 % longer (length in tokens and characters, and latency);
* ``topic shift``: the share of one of eight embedding topics grows from 12.5 % to 40 %;
* ``no drift``: four segments per run, every signal, no change.

Detection delay counts the affected stream's events from the change to the first alarm on a
signal the change moves; a run without one is a miss. False alarms are counted on the no-drift
streams after the reference phase, over all signals and segments, per 100 000 events.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import drift as river_drift
from scipy import stats

from benchmarks.scenarios import CHANGE_SIGNALS, Change, generate, make_world
from driftscope_llm.services.drift import (
    DriftSettings,
    Observation,
    SignalConfig,
    StreamKey,
    StreamMonitor,
    available_detectors,
)
from driftscope_llm.services.drift.settings import DEFAULT_SIGNALS

OURS_ANY = "driftscope (any detector)"
EQUAL_FA = "driftscope (any), budget {b:g}/100k"
BASELINES = ("river ADWIN", "river PageHinkley", "scipy fixed windows (α=0.05)")
SCIPY_WINDOW = 500


@dataclass(frozen=True)
class Scenario:
    name: str
    change: Change | None
    segments: int = 1
    affected: int = 0  # which segment changes


@dataclass(frozen=True)
class Task:
    scenario: Scenario
    run: int
    segment: int
    length: int
    budget: float
    ours_only: bool = False


@dataclass
class StreamResult:
    task: Task
    alarms: list[tuple[str, str, int]] = field(default_factory=list)  # (detector, signal, index)
    events: int = 0
    seconds_ours: float = 0.0
    seconds_baselines: float = 0.0


def all_detector_settings(budget: float) -> DriftSettings:
    """Default signals, but every registered detector on every signal it applies to."""
    kinds = available_detectors()
    signals = {
        name: SignalConfig(**{**cfg.model_dump(),
                              "detectors": tuple(d for d in sorted(kinds)
                                                 if cfg.kind in kinds[d])})
        for name, cfg in DEFAULT_SIGNALS.items()
    }
    return DriftSettings(signals=signals, max_false_alarms_per_100k=budget)


def scenarios(ref: int, length: int, nodrift_segments: int = 4) -> list[Scenario]:
    at = ref + (length - ref) // 2
    ramp = (length - ref) // 4
    return [
        Scenario("confidence drop (abrupt)", Change("confidence", at, -1.0)),
        Scenario("confidence drop (gradual)", Change("confidence", at, -1.0, ramp=ramp)),
        Scenario("refusal spike 2%→6% (1 of 4 segments)", Change("refusal", at, 0.06), 4, 2),
        Scenario("length +30%", Change("length", at, 1.3)),
        Scenario("topic shift 12.5%→40%", Change("topic", at, 0.4)),
        Scenario("no drift", None, nodrift_segments),
    ]


class Baselines:
    """river and scipy detectors on the scalar view of every signal of one stream.

    Embeddings: river sees each embedding's coordinate on the reference's first principal
    direction; scipy tests every coordinate with ``ks_2samp`` at ``α/d`` (Bonferroni, the
    feature-wise test Alibi Detect uses by default).
    """

    def __init__(self, ref_size: int) -> None:
        self.ref_size = ref_size
        self.adwin: dict[str, Any] = {}
        self.ph: dict[str, Any] = {}
        self.reference: dict[str, list[Any]] = defaultdict(list)
        self.window: dict[str, list[Any]] = defaultdict(list)
        self.axis: np.ndarray | None = None

    def scalar(self, name: str, v: Any, index: int) -> Any:
        if name == "embedding":
            v = np.asarray(v, dtype=np.float64)
            if index < self.ref_size:
                return v
            if self.axis is None:
                ref = np.stack(self.reference["embedding"])
                self.center = ref.mean(axis=0)
                self.axis = np.linalg.svd(ref - self.center, full_matrices=False)[2][0]
            return v
        if isinstance(v, bool):
            return 1.0 if v else 0.0
        return v

    def observe(self, obs: Observation, index: int) -> list[tuple[str, str, int]]:
        out: list[tuple[str, str, int]] = []
        for name, raw in obs.values.items():
            if raw is None:
                continue
            x = self.scalar(name, raw, index)
            r = x
            if name == "embedding":
                r = None if self.axis is None else float((x - self.center) @ self.axis)
            if isinstance(r, float):
                for label, store, cls in (("river ADWIN", self.adwin, river_drift.ADWIN),
                                          ("river PageHinkley", self.ph,
                                           river_drift.PageHinkley)):
                    det = store.get(name)
                    if det is None:
                        det = store[name] = cls()
                    det.update(r)
                    if det.drift_detected and index >= self.ref_size:
                        out.append((label, name, index))
            if index < self.ref_size:
                self.reference[name].append(x)
                continue
            win = self.window[name]
            win.append(x)
            if len(win) == SCIPY_WINDOW:
                if self._scipy_rejects(name, win):
                    out.append((BASELINES[2], name, index))
                win.clear()
        return out

    def _scipy_rejects(self, name: str, win: list[Any]) -> bool:
        ref = self.reference[name]
        if not ref:
            return False
        if name == "embedding":
            a, b = np.stack(ref), np.stack(win)
            p = stats.ks_2samp(a, b, axis=0, method="asymp").pvalue
            return bool(np.min(p) < 0.05 / a.shape[1])
        if isinstance(win[0], str) or name == "refusal":
            cats = sorted(set(map(str, ref)) | set(map(str, win)))
            table = np.array([[sum(1 for v in s if str(v) == c) for c in cats]
                              for s in (ref, win)])
            if table.shape[1] < 2:
                return False
            return bool(stats.chi2_contingency(table).pvalue < 0.05)
        return bool(stats.ks_2samp(ref, win, method="asymp").pvalue < 0.05)


def run_stream(task: Task) -> StreamResult:
    sc = task.scenario
    change = sc.change if task.segment == sc.affected else None
    seed = hash_seed(sc.name, task.run, task.segment)
    world = make_world(task.run)
    events = generate(world, task.length, seed, change, prefix=f"s{task.segment}-")
    settings = all_detector_settings(task.budget)
    mon = StreamMonitor(settings, StreamKey("model", f"run{task.run}", f"seg{task.segment}"))
    res = StreamResult(task, events=task.length)
    t0 = time.process_time()
    for o in events:
        for a in mon.observe(o):
            res.alarms.append((a.detector, a.signal, a.event_index))
    res.seconds_ours = time.process_time() - t0
    if not task.ours_only:
        base = Baselines(settings.reference_size)
        t0 = time.process_time()
        for i, o in enumerate(events):
            res.alarms.extend(base.observe(o, i))
        res.seconds_baselines = time.process_time() - t0
    return res


def hash_seed(*parts: Any) -> int:
    h = 1469598103934665603
    for ch in "|".join(map(str, parts)).encode():
        h = ((h ^ ch) * 1099511628211) % 2**64
    return h % 2**32


def detector_labels() -> list[str]:
    return [*sorted(available_detectors()), OURS_ANY, *BASELINES]


@dataclass
class Summary:
    delays: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    runs: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    applicable: dict[tuple[str, str], bool] = field(default_factory=dict)
    nodrift_alarms: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    nodrift_events: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    events: int = 0


def summarise(results: Iterable[StreamResult], ref: int) -> Summary:
    s = Summary()
    kinds = available_detectors()
    for r in results:
        sc = r.task.scenario
        s.seconds["ours"] += r.seconds_ours
        s.seconds["baselines"] += r.seconds_baselines
        s.events += r.events
        if sc.change is None:
            s.nodrift_events += r.events - ref
            for det, _, idx in r.alarms:
                if idx >= ref:
                    s.nodrift_alarms[det] += 1
                    if det in kinds:
                        s.nodrift_alarms[OURS_ANY] += 1
            continue
        if r.task.segment != sc.affected:
            continue
        s.runs[sc.name] += 1
        relevant = CHANGE_SIGNALS[sc.change.kind]
        first: dict[str, int] = {}
        for det, sig, idx in r.alarms:
            if sig in relevant and idx >= sc.change.at:
                first[det] = min(first.get(det, idx), idx)
                if det in kinds:
                    first[OURS_ANY] = min(first.get(OURS_ANY, idx), idx)
        for label in detector_labels():
            kind = DEFAULT_SIGNALS[next(iter(relevant))].kind
            s.applicable[(label, sc.name)] = label not in kinds or kind in kinds[label]
            if label in first:
                s.delays[(label, sc.name)].append(first[label] - sc.change.at)
    return s


def poisson_upper(k: int, conf: float = 0.95) -> float:
    """Upper confidence bound of a Poisson mean after observing ``k`` events."""
    return float(stats.chi2.ppf(conf, 2 * (k + 1)) / 2)


def markdown(s: Summary, scen: list[Scenario], budget: float, loose: dict[float, Summary],
             equal: dict[float, Summary], throughput: dict[str, float],
             args: argparse.Namespace) -> str:
    drift_sc = [x for x in scen if x.change is not None]
    nodrift = next(x for x in scen if x.change is None)
    lines = [
        f"Streams of {args.length} events (reference: the first 2000 of each), {args.runs} runs "
        f"per scenario, change at event {drift_sc[0].change.at if drift_sc[0].change else 0} "
        f"(gradual: reached over {drift_sc[1].change.ramp if drift_sc[1].change else 0} events); "
        f"no-drift: {nodrift.segments} segments per run. "
        f"Budget: {budget:g} false alarm per 100 000 events per model, split over every "
        "detector on every signal (all registered detectors enabled).",
        "",
        "Cells: median detection delay in events after the change (misses / runs). "
        "False alarms: per 100 000 post-reference events of the no-drift streams, all signals "
        "and segments.",
        "",
        "| detector | false alarms / 100k (no drift) | "
        + " | ".join(x.name for x in drift_sc) + " |",
        "|---" * (2 + len(drift_sc)) + "|",
    ]

    def row(label: str, src: Summary, fa_src: Summary, shown: str) -> str:
        per100k = 1e5 / max(1, fa_src.nodrift_events)
        cells = [f"{fa_src.nodrift_alarms.get(label, 0) * per100k:.2f}"]
        for x in drift_sc:
            if not src.applicable.get((label, x.name), True):
                cells.append("–")
                continue
            d = src.delays.get((label, x.name), [])
            runs = src.runs[x.name]
            med = f"{int(np.median(d))}" if d else "never"
            cells.append(f"{med} ({runs - len(d)}/{runs})")
        return f"| {shown} | " + " | ".join(cells) + " |"

    for label in detector_labels():
        lines.append(row(label, s, s, f"**{label}**" if label == OURS_ANY else label))
    for b, es in sorted(equal.items()):  # on half as many runs
        lines.append(row(OURS_ANY, es, loose.get(b, es), EQUAL_FA.format(b=b)))
    per100k = 1e5 / max(1, s.nodrift_events)
    k = s.nodrift_alarms.get(OURS_ANY, 0)
    lines += [
        "",
        "False-alarm budget (driftscope, all detectors, all signals and segments together, "
        "no-drift streams; the looser budgets on half as many runs):",
        "",
        "| budget / 100k events | no-drift events | false alarms | observed / 100k | "
        "95 % upper bound / 100k |",
        "|---|---|---|---|---|",
        f"| {budget:g} | {s.nodrift_events} | {k} | {k * per100k:.2f} | "
        f"{poisson_upper(k) * per100k:.2f} |",
    ]
    for b, ls in sorted(loose.items()):
        kk = ls.nodrift_alarms.get(OURS_ANY, 0)
        pe = 1e5 / max(1, ls.nodrift_events)
        lines.append(f"| {b:g} | {ls.nodrift_events} | {kk} | {kk * pe:.2f} | "
                     f"{poisson_upper(kk) * pe:.2f} |")
    lines += [
        "",
        "Throughput (CPU seconds of one process, same events, measured in this run): "
        f"StreamMonitor with the default settings on the ten scalar signals "
        f"{throughput['ours']:,.0f} events/s; river ADWIN on the same ten signals "
        f"{throughput['adwin']:,.0f} events/s "
        f"(ratio {throughput['ours'] / throughput['adwin']:.2f}). "
        "With every detector and embeddings, in the runs above: "
        f"{s.events / max(1e-9, s.seconds['ours']):,.0f} events/s.",
    ]
    return "\n".join(lines)


def measure_throughput(events_n: int = 10_000) -> dict[str, float]:
    """Events per CPU second: default monitor vs river ADWIN on the same scalar signals."""
    settings = DriftSettings()
    ref = settings.reference_size
    events = generate(make_world(0), ref + events_n, 123, embed_rate=0.0)
    mon = StreamMonitor(settings, StreamKey("m", "v", "s"))
    for o in events[:ref]:
        mon.observe(o)
    t0 = time.process_time()
    for o in events[ref:]:
        mon.observe(o)
    ours = events_n / (time.process_time() - t0)
    dets = {k: river_drift.ADWIN() for k, v in events[0].values.items()
            if isinstance(v, float | bool)}
    t0 = time.process_time()
    for o in events[ref:]:
        for k, det in dets.items():
            det.update(float(o.values[k]))  # type: ignore[arg-type]
    adwin = events_n / (time.process_time() - t0)
    return {"ours": ours, "adwin": adwin}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small run for tests (~1-2 min)")
    p.add_argument("--markdown", action="store_true", help="print only the markdown tables")
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--length", type=int, default=None, help="events per stream")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--budget", type=float, default=1.0, help="false alarms per 100k events")
    args = p.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 4)
    args.length = args.length or (6000 if args.quick else 12000)
    ref = DriftSettings().reference_size
    scen = scenarios(ref, args.length, 2 if args.quick else 8)
    started = time.time()

    def tasks(budget: float, which: list[Scenario], ours_only: bool, runs: int) -> list[Task]:
        return [Task(sc, r, seg, args.length, budget, ours_only)
                for sc in which for r in range(runs) for seg in range(sc.segments)]

    nodrift = [x for x in scen if x.change is None]
    drifts = [x for x in scen if x.change is not None]
    equal_budget = 10.0  # about river ADWIN's false-alarm rate on these streams
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:

            def run(ts: list[Task]) -> Summary:
                return summarise(progress(pool.imap_unordered(run_stream, ts), len(ts)), ref)

            summary = run(tasks(args.budget, scen, False, args.runs))
            extra = max(1, args.runs // 2)
            loose = {b: run(tasks(b, nodrift, True, extra)) for b in (equal_budget, 100.0)}
            equal = {equal_budget: run(tasks(equal_budget, drifts, True, extra))}
    throughput = measure_throughput()
    text = markdown(summary, scen, args.budget, loose, equal, throughput, args)
    if not args.markdown:
        print(f"# drift benchmark ({time.time() - started:.0f} s wall)\n", file=sys.stderr)
    print(text)
    return 0


def progress(it: Iterable[StreamResult], total: int) -> list[StreamResult]:
    out = []
    for i, r in enumerate(it, 1):
        out.append(r)
        print(f"\r{i}/{total} streams", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


if __name__ == "__main__":
    sys.exit(main())

