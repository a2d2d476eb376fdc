"""StreamMonitor throughput on the ten scalar signals, against river's ADWIN in the same run.

    python -m benchmarks.monitor_throughput [--events 10000] [--repeats 5]

One stream of the collector's ten scalar signals (:mod:`benchmarks.scenarios`, no embeddings),
its reference (the first ``reference_size`` events) taken once; then ``--events`` monitored
events, twice: without drift, and with a one-standard-deviation confidence drop plus a refusal
rise halfway (so that alarms, re-arming and cooldowns are part of what is timed). Each is fed to
a default :class:`~driftscope_llm.services.drift.StreamMonitor` (``DriftSettings()``, restored
from the same post-reference state for every timing):

* through ``observe``, one event at a time;
* through ``observe_batch``, in batches of 100 and of 500 events (columns as a collector builds
  them: float arrays for the continuous signals, a bool array for refusals, a list of
  ``finish_reason`` strings);

and the same values to river's ``ADWIN`` (its defaults), one detector per signal
(``finish_reason`` as "is it ``stop``", 0/1), the baseline ``docs/drift-results.md`` compares with.
Events per CPU second of this process (``time.process_time``), the best of ``--repeats`` runs of
each, so that other processes on the machine distort less.

The issue's target (issue 18): at least 4× the StreamMonitor's events/s of before, which
``docs/drift-results.md`` measured at 0.06× ADWIN's in the same run: so at least 0.24× ADWIN here.
The benchmark also checks that ``observe`` and ``observe_batch`` raised identical anomalies (every
field, same order) and left identical state on both streams, and exits 1 if they did not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from river import drift as river_drift

from benchmarks.scenarios import Change, generate, make_world
from driftscope_llm.services.drift import (
    DriftSettings,
    Observation,
    ObservationBatch,
    SignalKind,
    StreamKey,
    StreamMonitor,
)

TODAY_RATIO = 0.06
"""StreamMonitor events/s over river ADWIN's before issue 18 (docs/drift-results.md)."""
TARGET_RATIO = 4 * TODAY_RATIO
BATCH_SIZES = (100, 500)
KEY = StreamKey("model", "v1", "all")


@dataclass(frozen=True)
class Stream:
    name: str
    reference: list[Observation]
    events: list[Observation]


def streams(settings: DriftSettings, n: int) -> list[Stream]:
    """The no-drift and the drift stream, the ten scalar signals only."""
    ref = settings.reference_size
    scalar = [name for name, c in settings.signals.items() if c.kind is not SignalKind.EMBEDDING]
    out = []
    for name, change, refusal in (("no drift", None, None),
                                  ("drift", Change("confidence", ref + n // 2, -1.0), 0.06)):
        events = generate(make_world(0), ref + n, 123, change, embed_rate=0.0)
        if refusal is not None:  # refusals rise too, from the same event on
            rng = np.random.default_rng(7)
            for i in range(ref + n // 2, ref + n):
                events[i].values["refusal"] = bool(rng.random() < refusal)  # type: ignore[index]
        events = [Observation(o.event_id, o.ts, {k: o.values[k] for k in scalar})
                  for o in events]
        out.append(Stream(name, events[:ref], events[ref:]))
    return out


def batches(events: list[Observation], size: int) -> list[ObservationBatch]:
    """Columns as a collector builds them for one stream's share of a poll."""
    out = []
    for lo in range(0, len(events), size):
        chunk = events[lo : lo + size]
        cols: dict[str, Any] = {}
        for name in chunk[0].values:
            col = [o.values[name] for o in chunk]
            cols[name] = np.asarray(col) if isinstance(col[0], float | bool) else col
        out.append(ObservationBatch([o.event_id for o in chunk], [o.ts for o in chunk], cols))
    return out


def best_rate(n: int, repeats: int, run: Callable[[], float]) -> float:
    """Events per CPU second: ``run`` returns its CPU seconds; the fastest of ``repeats``."""
    return n / min(run() for _ in range(repeats))


@dataclass
class Result:
    stream: str
    rates: dict[str, float]
    anomalies: int
    identical: bool


def measure(stream: Stream, settings: DriftSettings, repeats: int,
            tick: Callable[[], None]) -> Result:
    warm = StreamMonitor(settings, KEY)
    for o in stream.reference:
        warm.observe(o)
    state = json.loads(json.dumps(warm.state_dict()))
    n = len(stream.events)
    outputs: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {}

    def one_by_one() -> float:
        mon = StreamMonitor.from_state(settings, state)
        t0 = time.process_time()
        raised = [a for o in stream.events for a in mon.observe(o)]
        took = time.process_time() - t0
        outputs["observe"] = ([a.to_dict() for a in raised], mon.state_dict())
        tick()
        return took

    def batched(size: int) -> Callable[[], float]:
        prepared = batches(stream.events, size)

        def run() -> float:
            mon = StreamMonitor.from_state(settings, state)
            t0 = time.process_time()
            raised = [a for b in prepared for a in mon.observe_batch(b)]
            took = time.process_time() - t0
            outputs[f"batch {size}"] = ([a.to_dict() for a in raised], mon.state_dict())
            tick()
            return took
        return run

    names = list(stream.events[0].values)
    columns = {k: [float(o.values[k] == "stop") if isinstance(o.values[k], str)
                   else float(o.values[k]) for o in stream.events]  # type: ignore[arg-type]
               for k in names}

    def adwin() -> float:
        dets = {k: river_drift.ADWIN() for k in names}
        t0 = time.process_time()
        for i in range(n):
            for k, det in dets.items():
                det.update(columns[k][i])
        took = time.process_time() - t0
        tick()
        return took

    rates = {"observe": best_rate(n, repeats, one_by_one)}
    for size in BATCH_SIZES:
        rates[f"batch {size}"] = best_rate(n, repeats, batched(size))
    rates["river ADWIN"] = best_rate(n, repeats, adwin)
    ref_out = json.dumps(outputs["observe"], sort_keys=True, default=repr)
    identical = all(json.dumps(outputs[f"batch {s}"], sort_keys=True, default=repr) == ref_out
                    for s in BATCH_SIZES)
    return Result(stream.name, rates, len(outputs["observe"][0]), identical)


def table(results: list[Result]) -> str:
    lines = ["| stream | path | events/s | × river ADWIN | ≥ 0.24× ADWIN (4× before) |",
             "|---|---|---|---|---|"]
    for r in results:
        adwin = r.rates["river ADWIN"]
        for path, rate in r.rates.items():
            if path == "river ADWIN":
                lines.append(f"| {r.stream} | river ADWIN (10 detectors) | {rate:,.0f} | 1.00 | |")
                continue
            ratio = rate / adwin
            label = "observe, one by one" if path == "observe" else f"observe_batch, {path}"
            verdict = "yes" if ratio >= TARGET_RATIO else "**no**"
            lines.append(f"| {r.stream} | {label} | {rate:,.0f} | {ratio:.2f} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=10_000, help="monitored events per stream")
    p.add_argument("--repeats", type=int, default=5, help="timings per path; the best counts")
    args = p.parse_args(argv)
    if args.events < 1000 or args.repeats < 1:
        p.error("--events must be at least 1000 and --repeats at least 1")
    settings = DriftSettings()
    err = Console(stderr=True)
    data = streams(settings, args.events)
    total = len(data) * args.repeats * (2 + len(BATCH_SIZES))
    results = []
    with Progress(TextColumn("timing"), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task("timing", total=total)
        for stream in data:
            results.append(measure(stream, settings, args.repeats,
                                   lambda: progress.advance(task)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"StreamMonitor on the ten scalar signals, default settings, {args.events:,} events "
          f"per stream after the reference; events per CPU second, best of {args.repeats}; "
          f"load average {load:.1f} on {os.cpu_count()} CPUs.\n")
    print(table(results))
    print()
    for r in results:
        print(f"{r.stream}: {r.anomalies} anomalies; observe and observe_batch (batches of "
              f"{' and '.join(map(str, BATCH_SIZES))}) raised identical anomalies and left "
              f"identical state: {'yes' if r.identical else 'NO'}")
    print(f"\nTarget (issue 18): ≥ 4× the StreamMonitor's events/s before it, which was "
          f"{TODAY_RATIO}× river ADWIN (docs/drift-results.md): ≥ {TARGET_RATIO:.2f}× ADWIN "
          f"in this run.")
    return 0 if all(r.identical for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
