"""Chaos: what an operator would try on the real stack, as one command that prints one table.

    python -m benchmarks.chaos [--reduced] [--only PROBE,...] [--json PATH]

Every probe runs real processes (``driftscope collector``, ``driftscope ingest``) against a
PRIVATE Kafka + Redis (``deploy/local/stack`` in a directory and on ports of its own: the probes
pause, kill and restart the services, so never the shared stack):

==================  ============================================================================
probe               what it does
==================  ============================================================================
poison_sigkill      valid events with a planted refusal drift, poison shapes interleaved;
                    the collector is SIGKILLed twice mid-stream and restarted
cardinality         thousands of hostile model names, versions and route labels (control
                    characters, separators, 256-character names); RSS and ``/metrics`` size
scale_out           two collectors in one group on 4 partitions, four models each with a planted
                    drift; one SIGKILLed, the other SIGSTOPped past the session timeout; the
                    lag they export afterwards is compared with the group's real lag
redis               Redis paused (SIGSTOP), then restarted empty (no persistence), mid-stream;
                    streams whose state the checkpoint lists but Redis no longer holds
broker_restart      the broker restarted mid-stream (same data)
clock_skew_v2_year1 v1 normal, v2 refusing 30% from its first event, whose ``ts`` says year 1
clock_skew_v1_9999  the same rollout with v1's first event in year 9999
http_burst          100 simultaneous connections to ``driftscope ingest``
http_slowloris      clients sending a partial body (and partial headers); all must get 408 and
                    the receiver's threads must come back
http_bad_spans      a request holding good spans, one span over 1 MB and one ending at 1e24 ns,
                    sent three times (as a client would retry)
http_kafka_stopped  50 clients in a loop (retrying 429/503 as exporters do) while the broker is
                    paused; every span acknowledged with 200 must be on the topic once
==================  ============================================================================

Columns: **produced** (events or spans the broker or the receiver acknowledged), **counted**
(observed by the detectors: the checkpoints' model-level totals; for HTTP probes, spans on the
topic), **dead-lettered** (distinct DLQ records), **lost** (acknowledged, never counted),
**duplicated** (counted more than once), **incidents** expected/opened, **false alerts**
(incidents no planted drift explains, and stale exported lag that would page), **resets**
(connections reset or refused). A probe holds when lost, duplicated, false alerts and resets are
0 and the incidents opened are those expected. Exit code 0 when every probe holds, else 1.
``--reduced`` is the form ``make test`` runs (``tests/integration/test_chaos.py``): fewer
events, shorter pauses.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.chaos_http import HTTP_PROBES
from benchmarks.chaos_probes import COLLECTOR_PROBES, Chaos

__all__ = ["PROBES", "Row", "main", "run"]


@dataclass
class Row:
    """One probe's outcome (module docstring: the columns)."""

    probe: str
    produced: int = 0
    counted: int = 0
    dead_lettered: int = 0
    lost: int = 0
    duplicated: int = 0
    incidents_expected: int | None = None
    incidents_opened: int | None = None
    false_alerts: int = 0
    resets: int | None = None
    seconds: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def hidden(self) -> int:
        """Planted drifts no incident was opened for."""
        if self.incidents_expected is None or self.incidents_opened is None:
            return 0
        return max(0, self.incidents_expected - self.incidents_opened)

    @property
    def holds(self) -> bool:
        return (self.error is None and self.lost == 0 and self.duplicated == 0
                and self.false_alerts == 0
                and not self.resets and self.hidden == 0
                and self.incidents_expected == self.incidents_opened)


Probe = Callable[[Chaos, Row], None]
PROBES: dict[str, Probe] = {**COLLECTOR_PROBES, **HTTP_PROBES}


def run(probes: list[str], *, reduced: bool, workdir: Path | None = None,
        say: Callable[[str], None] = print) -> list[Row]:
    """Run ``probes`` in order on one private stack; a probe that raises is a failed row (its
    error in the notes), and the next probe still runs."""
    work = workdir or Path(tempfile.mkdtemp(prefix="driftscope-chaos-"))
    rows: list[Row] = []
    with Chaos(work, reduced=reduced, say=say) as chaos:
        for name in probes:
            row = Row(name)
            t0 = time.monotonic()
            say(f"--- {name}")
            restarted = chaos.ensure_up()
            if restarted:
                row.notes.append(f"{', '.join(restarted)} did not answer before the probe and "
                                 "was started again")
            try:
                PROBES[name](chaos, row)
            except Exception as exc:  # a probe that breaks is a result, not the end of the run
                row.error = f"{type(exc).__name__}: {exc}"[:400]
                row.notes.append(f"probe failed: {row.error}")
            row.seconds = time.monotonic() - t0
            rows.append(row)
            say(f"    {'holds' if row.holds else 'FAILS'} in {row.seconds:.0f}s: "
                f"{'; '.join(row.notes)}")
    return rows


def table(rows: list[Row]) -> str:
    """The markdown table (the README and docs/collector.md show it as printed)."""
    out = ["| probe | produced | counted | dead-lettered | lost | duplicated | incidents "
           "expected / opened | false alerts | resets | holds |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        incidents = ("" if r.incidents_expected is None
                     else f"{r.incidents_expected} / {r.incidents_opened}")
        resets = "" if r.resets is None else str(r.resets)
        out.append(f"| {r.probe} | {r.produced:,} | {r.counted:,} | {r.dead_lettered:,} | "
                   f"{r.lost:,} | {r.duplicated:,} | {incidents} | {r.false_alerts} | "
                   f"{resets} | {'yes' if r.holds else '**no**'} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reduced", action="store_true",
                   help="fewer events and shorter pauses (what make test runs)")
    p.add_argument("--only", default="", help=f"comma-separated probes of: {', '.join(PROBES)}")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(PROBES)
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        p.error(f"unknown probes: {', '.join(unknown)}")
    rows = run(names, reduced=args.reduced)
    print()
    print(table(rows))
    for r in rows:
        for note in r.notes:
            print(f"- {r.probe}: {note}")
    if args.json is not None:
        args.json.write_text(json.dumps([{**asdict(r), "holds": r.holds} for r in rows],
                                        indent=2))
    return 0 if all(r.holds for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
