"""How often the regression gate fails two identical models, and how often it catches a bad one.

    python -m benchmarks.regress_false_alarms [--runs N] [--alpha A] [--samples S] [--out DIR]

Real models, real generations: the demo's support bot is fine-tuned (v1 clean; v2 further, with
planted billing refusals — :mod:`driftscope_llm.services.demo.scenario`), and each version samples
a *pool* of
``pool`` generations (temperature 1, token logprobs) for every probe of a suite stratified over
the four routes. One gate run draws, for every probe, ``2 × samples`` distinct generations of the
pool at random and gives half to each side, so every run is an exact comparison of two
independent sample sets of one model (the null) — the gate itself (:func:`run_gate`) is what
production code runs. Runs share a pool, so they are not independent; the pool is large against
one run's draw (``pool >> 2 × samples``) so that the sharing matters little.

Rows, for the gate at its stated level α and for the baseline measured in the same run — the
same detectors *without* splitting α over the (signal, detector) pairs (each pair at α, what
running the tests one by one would give):

* ``v1 vs v1``: share of runs failed (false alarms), its exact (Clopper-Pearson) 95 % upper
  bound, and the ratio to α;
* ``v2 vs v1`` on every billing prompt (40 probes): share of runs failed (power against the
  planted change).

The unit test ``tests/integration/test_regress_false_alarms.py`` runs :func:`measure` on a
small pool and asserts the bound: failures on ``v1 vs v1`` no more than the binomial
99.9 % quantile at α.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from driftscope_llm.services.demo.scenario import ROUTES, ScenarioSettings, train_versions
from driftscope_llm.services.regress.gate import GateSettings, run_gate
from driftscope_llm.services.regress.generation import GenerationSettings, LocalGenerator, Sample
from driftscope_llm.services.regress.probes import Probe, stratified_sample

Pool = list[list[Sample]]


@dataclass(frozen=True)
class Rate:
    """``failed`` of ``runs`` gate runs failed; ``upper`` is the exact 95 % upper bound."""

    failed: int
    runs: int

    @property
    def share(self) -> float:
        return self.failed / self.runs

    @property
    def upper(self) -> float:
        if self.failed >= self.runs:
            return 1.0
        return float(stats.beta.ppf(0.95, self.failed + 1, self.runs - self.failed))


def suite(per_route: int, seed: int = 0) -> list[Probe]:
    """A suite stratified over the demo's routes (every template × subject of each route)."""
    templates = ("how do i change {x} ?", "i have a question about {x} .",
                 "can you help me with {x} ?", "where can i find {x} ?",
                 "something is wrong with {x} .")
    rows = [(f"{r}-{i:02d}", t.format(x=s), r) for r, (subjects, _) in ROUTES.items()
            for i, (t, s) in enumerate((t, s) for t in templates for s in subjects)]
    return stratified_sample(rows, per_route, seed=seed)


def make_pool(model: Path, probes: Sequence[Probe], pool: int, seed: int) -> Pool:
    """``pool`` sampled generations per probe from ``model``."""
    gen = LocalGenerator(model)
    return gen.generate([p.prompt for p in probes], GenerationSettings(samples=pool, seed=seed))


def draw(rng: random.Random, base_pool: Pool, cand_pool: Pool, samples: int,
         ) -> tuple[Pool, Pool]:
    """One run's two sides: distinct pool entries per probe (disjoint when the pools are one)."""
    base, cand = [], []
    for b, c in zip(base_pool, cand_pool, strict=True):
        if b is c:
            picked = rng.sample(range(len(b)), 2 * samples)
            base.append([b[i] for i in picked[:samples]])
            cand.append([b[i] for i in picked[samples:]])
        else:
            base.append(rng.sample(b, samples))
            cand.append(rng.sample(c, samples))
    return base, cand


def measure(probes: Sequence[Probe], base_pool: Pool, cand_pool: Pool, *, runs: int,
            samples: int, settings: GateSettings, seed: int = 0) -> Rate:
    """Gate runs on fresh draws from the pools; how many failed."""
    rng = random.Random(seed)
    failed = 0
    for i in range(runs):
        base, cand = draw(rng, base_pool, cand_pool, samples)
        run_settings = settings.model_copy(update={"seed": seed * 100_003 + i})
        failed += run_gate(probes, base, cand, run_settings).verdict == "regression"
    return Rate(failed, runs)


def uncorrected(settings: GateSettings, pairs: int) -> GateSettings:
    """The baseline: every (signal, detector) pair at the gate's whole level α."""
    return settings.model_copy(update={"false_alarm_rate": min(0.49, settings.false_alarm_rate
                                                               * pairs)})


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--samples", type=int, default=4, help="samples per probe and side")
    ap.add_argument("--per-route", type=int, default=6, help="probes per route")
    ap.add_argument("--pool", type=int, default=32, help="pooled generations per probe")
    ap.add_argument("--out", type=Path, default=None, help="keep the trained models here")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    out = args.out or Path(tempfile.mkdtemp(prefix="regress-bench-"))
    print(f"training v1 and v2 under {out} ...", file=sys.stderr)
    versions = train_versions(out, ScenarioSettings())
    probes = suite(args.per_route)
    billing = [p for p in suite(per_route=len(ROUTES["billing"][0]) * 5) if p.group == "billing"]
    print(f"sampling pools of {args.pool} per probe ...", file=sys.stderr)
    pool_v1 = make_pool(versions.v1, probes, args.pool, seed=1)
    bill_v1 = make_pool(versions.v1, billing, args.pool, seed=3)
    bill_v2 = make_pool(versions.v2, billing, args.pool, seed=2)
    gate = GateSettings(false_alarm_rate=args.alpha)
    pairs = run_gate(probes, *draw(random.Random(0), pool_v1, pool_v1, args.samples),
                     gate).pairs
    naive = uncorrected(gate, pairs)
    print(f"{len(probes)} probes stratified over routes (power: {len(billing)} billing probes), "
          f"{args.samples} samples per probe and side, {args.runs} runs, level α={args.alpha:g} "
          f"over {pairs} pairs")
    print("| gate | v1 vs v1: failed | 95% upper | ratio to α | v2 vs v1 (billing): failed |")
    print("| --- | --- | --- | --- | --- |")
    for name, s in (("driftscope regress (α split over pairs)", gate),
                    ("baseline: each pair at α (uncorrected)", naive)):
        null = measure(probes, pool_v1, pool_v1, runs=args.runs, samples=args.samples,
                       settings=s)
        power = measure(billing, bill_v1, bill_v2, runs=max(20, args.runs // 10),
                        samples=args.samples, settings=s, seed=1)
        print(f"| {name} | {null.failed}/{null.runs} = {null.share:.3f} | {null.upper:.3f} | "
              f"{null.share / args.alpha:.2f} | {power.failed}/{power.runs} = "
              f"{power.share:.2f} |")
    print(f"({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
