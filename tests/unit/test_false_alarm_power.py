"""False-alarm claims checked with enough data for the check to mean something.

A count of zero alarms says little unless the run was long enough that a detector *over* its
budget would have shown more. Each test here computes an exact confidence bound of what it
observed and asserts the bound, so a failing detector fails the test with high probability:

* **The whole monitor at the default budget** (1 false alarm per 100 000 events per model, every
  signal and detector of one stream holding the model's whole budget): :data:`STREAMS` no-drift
  streams with fresh references and :data:`EVENTS` monitored events each — 600 000 events in
  all. The one-sided 95 % Poisson upper bound of the observed count must stay below
  :data:`BUDGET_MULTIPLE` times the budget, i.e. at most 10 alarms. A monitor at exactly its
  budget (6 expected alarms) fails that with probability 0.043; one at three times it (18
  expected) passes with probability 0.030
  (:func:`test_the_power_check_separates_1_from_3_per_100k` computes both), so the test tells a
  controlled monitor from one at 3 per 100k. At a budget loose enough to count (300 per 100k) the
  rate is bounded on *both* sides: not above the budget, and not vacuously far below it.
* **Each window test at its level**: the rejection rate of no-drift windows at α = 0.05 lies
  inside both-sided bounds (Clopper-Pearson, 99 %): not significantly above ``HI · α`` and not
  significantly below ``LO · α``, so a test that never rejects fails as surely as one that
  rejects too often (:func:`test_the_level_check_fails_a_detector_that_never_rejects`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from benchmarks.scenarios import generate, make_world
from driftscope_llm.services.drift import (
    Budget,
    DriftSettings,
    SignalConfig,
    SignalKind,
    StreamKey,
    StreamMonitor,
)
from driftscope_llm.services.drift.detector import DetectorContext, detector_class
from driftscope_llm.services.drift.effects import WindowView
from driftscope_llm.services.drift.embedding_space import fit_embedding_reference
from driftscope_llm.services.drift.reference import (
    BooleanReference,
    CategoricalReference,
    ContinuousReference,
    SignalReference,
)
from driftscope_llm.services.drift.window import SignalWindow

#: No-drift streams and monitored events per stream (after each stream's reference).
STREAMS = 30
EVENTS = 20_000
#: The observed rate's one-sided upper bound must stay below this multiple of the budget.
BUDGET_MULTIPLE = 3.0
#: Confidence of the Poisson upper bound.
CONFIDENCE = 0.95


def poisson_upper(count: int, confidence: float = CONFIDENCE) -> float:
    """Exact one-sided upper confidence bound of a Poisson mean after observing ``count``."""
    return float(stats.chi2.ppf(confidence, 2 * (count + 1)) / 2)


def poisson_lower(count: int, confidence: float = CONFIDENCE) -> float:
    """Exact one-sided lower confidence bound of a Poisson mean after observing ``count``."""
    return 0.0 if count == 0 else float(stats.chi2.ppf(1 - confidence, 2 * count) / 2)


def within_budget(count: int, events: int, per_100k: float) -> bool:
    """The test's verdict: the count's upper bound, as a rate, below the budget multiple."""
    return poisson_upper(count) / events * 100_000 < BUDGET_MULTIPLE * per_100k


def test_the_power_check_separates_1_from_3_per_100k() -> None:
    """The verdict's error rates at this size, from the Poisson law (no simulation)."""
    events = STREAMS * EVENTS
    passes = [c for c in range(200) if within_budget(c, events, 1.0)]
    assert passes == list(range(len(passes)))  # passing is "at most c_max alarms"
    c_max = passes[-1]
    at_budget = stats.poisson.sf(c_max, events * 1.0 / 100_000)
    at_three = stats.poisson.cdf(c_max, events * 3.0 / 100_000)
    assert at_budget <= 1 - CONFIDENCE + 1e-9  # a monitor at its budget fails at most 5 %
    assert at_three < 0.05  # one at 3 per 100k passes less than 5 % of the time


def no_drift_alarms(settings: DriftSettings, streams: int, events: int, seed: int) -> list[Any]:
    world = make_world(0)
    found = []
    for s in range(streams):
        mon = StreamMonitor(settings, StreamKey("m", "v", f"s{s}"))
        n = settings.reference_size + events
        for o in generate(world, n, seed + s, prefix=f"s{s}-"):
            found += mon.observe(o)
    return found


def assert_budget_holds(spend: float = 1.0) -> None:
    """The power check at the default budget. ``spend`` > 1 runs monitors that spend that
    multiple of the budget, still judged against the default one: at 3 the check must fail
    (how the check was shown to fail; ``python -c "from tests.unit.test_false_alarm_power
    import assert_budget_holds as a; a(3.0)"``)."""
    budget = DriftSettings().max_false_alarms_per_100k
    settings = DriftSettings(max_false_alarms_per_100k=budget * spend)
    found = no_drift_alarms(settings, STREAMS, EVENTS, seed=5000)
    events = STREAMS * EVENTS
    upper = poisson_upper(len(found)) / events * 100_000
    assert upper < BUDGET_MULTIPLE * budget, (
        f"{len(found)} false alarms in {events} events: upper bound {upper:.2f} per 100k, "
        f"budget {budget:g}", [(a.signal, a.detector, a.event_index) for a in found])


@pytest.mark.slow
def test_no_drift_false_alarms_at_the_default_budget_have_power() -> None:
    assert_budget_holds()


@pytest.mark.slow
def test_no_drift_false_alarms_track_a_loose_budget_from_both_sides() -> None:
    """At 300 per 100k the count is large enough to bound from below too: a control that is
    silent (or far more conservative than its budget) fails, as does one above it."""
    loose = 300.0
    streams, events = 4, 10_000
    found = no_drift_alarms(DriftSettings(max_false_alarms_per_100k=loose), streams, events,
                            seed=7000)
    expected = loose * streams * events / 100_000  # 120 at exactly the budget
    assert poisson_lower(len(found)) <= expected, len(found)
    assert poisson_upper(len(found)) >= expected / 10, len(found)


#: The window tests' level, and replicates per detector (fresh reference each).
ALPHA = 0.05
REPS = 2000
#: Two-sided confidence of the Clopper-Pearson interval of a rejection rate.
LEVEL_CONFIDENCE = 0.99


def clopper_pearson(hits: int, n: int) -> tuple[float, float]:
    tail = (1 - LEVEL_CONFIDENCE) / 2
    lo = 0.0 if hits == 0 else float(stats.beta.ppf(tail, hits, n - hits + 1))
    hi = 1.0 if hits == n else float(stats.beta.ppf(1 - tail, hits + 1, n - hits))
    return lo, hi


def assert_level(hits: int, n: int, lo: float, hi: float) -> None:
    """The rejection rate is consistent with lying in ``[lo · α, hi · α]``."""
    low, high = clopper_pearson(hits, n)
    assert low <= hi * ALPHA, f"{hits}/{n} rejections: above {hi:g} x alpha"
    assert high >= lo * ALPHA, f"{hits}/{n} rejections: below {lo:g} x alpha"


def test_the_level_check_fails_a_detector_that_never_rejects() -> None:
    with pytest.raises(AssertionError, match="below"):
        assert_level(0, REPS, 0.25, 1.0)
    with pytest.raises(AssertionError, match="above"):
        assert_level(int(2 * ALPHA * REPS), REPS, 0.25, 1.0)  # twice the level
    assert_level(int(ALPHA * REPS), REPS, 0.25, 1.0)  # exactly the level passes


def _context(name: str, kind: SignalKind, ref: SignalReference) -> DetectorContext:
    settings = DriftSettings(
        signals={"s": SignalConfig(kind=kind, detectors=(name,), min_effect=1e-9)},
        permutations=19, embedding_components=4, embedding_clusters=4)
    return DetectorContext("s", settings.signals["s"], settings, ref,
                           Budget(per_event=ALPHA / 50, alpha=ALPHA, arl=50 / ALPHA), seed=3)


def _window(kind: SignalKind, values: list[Any]) -> SignalWindow:
    w = SignalWindow(kind, len(values))
    for i, v in enumerate(values):
        w.append(v, str(i), i)
    return w


def _continuous(rng: np.random.Generator, n: int, w: int) -> tuple[SignalReference, list[Any]]:
    x = rng.lognormal(0.0, 0.8, size=n + w)
    return ContinuousReference(np.sort(x[:n])), x[n:].tolist()


def _boolean(rng: np.random.Generator, n: int, w: int) -> tuple[SignalReference, list[Any]]:
    x = rng.random(n + w) < 0.03
    return BooleanReference(n, int(x[:n].sum())), [float(v) for v in x[n:]]


def _categorical(rng: np.random.Generator, n: int, w: int) -> tuple[SignalReference, list[Any]]:
    x = rng.choice(["stop", "length", "filter"], p=[0.93, 0.05, 0.02], size=n + w)
    cats, counts = np.unique(x[:n], return_counts=True)
    return (CategoricalReference(dict(zip(cats.tolist(), counts.tolist(), strict=True))),
            x[n:].tolist())


def _embedding(rng: np.random.Generator, n: int, w: int) -> tuple[SignalReference, list[Any]]:
    centers = rng.normal(size=(6, 32))
    topics = rng.integers(0, 6, size=n + w)
    x = centers[topics] + rng.normal(size=(n + w, 32))
    ref = fit_embedding_reference(x[:n], components=4, clusters=4, seed=0)
    return ref, [(ref.project(v), int(ref.assign(v[None, :])[0])) for v in x[n:]]


# (detector, kind, draw, replicates, lo, hi). Exact tests may not exceed α (hi 1); asymptotic
# ones (psi, embedding_projection) get hi 1.5, as the permutation confirmation guards them
# further. lo 1/4: discrete exact tests are conservative (measured: chi_square's Bonferroni over
# Fisher tests 0.58 α, embedding_clusters 0.48 α). Wasserstein's Borell-TIS threshold is an upper
# bound that tightens only as α falls: at α = 0.05 it rejects about 1/50 as often (measured
# 0.001), so it gets lo 1/50 over 4x the replicates — 0 rejections of 8000 still fail that
# (upper bound 0.00066 < 0.001).
WINDOW_CASES = [
    ("ks", SignalKind.CONTINUOUS, _continuous, REPS, 0.25, 1.0),
    ("psi", SignalKind.CONTINUOUS, _continuous, REPS, 0.25, 1.5),
    ("wasserstein", SignalKind.CONTINUOUS, _continuous, 4 * REPS, 1 / 50, 1.0),
    ("two_proportion", SignalKind.BOOLEAN, _boolean, REPS, 0.25, 1.0),
    ("chi_square", SignalKind.CATEGORICAL, _categorical, REPS, 0.25, 1.0),
    ("embedding_projection", SignalKind.EMBEDDING, _embedding, REPS // 4, 0.25, 1.5),
    ("embedding_clusters", SignalKind.EMBEDDING, _embedding, REPS // 4, 0.25, 1.0),
]


@pytest.mark.parametrize(("name", "kind", "draw", "reps", "lo", "hi"), WINDOW_CASES,
                         ids=[c[0] for c in WINDOW_CASES])
def test_window_tests_reject_at_their_level_from_both_sides(
        name: str, kind: SignalKind, draw: Any, reps: int, lo: float, hi: float) -> None:
    rng = np.random.default_rng(sum(map(ord, name)) + 1)
    cls = detector_class(name)
    hits = 0
    for _ in range(reps):
        ref, values = draw(rng, 400, 200)
        det = cls(_context(name, kind, ref))
        ev = det.evaluate(WindowView(det.ctx.config, ref, _window(kind, values)))
        assert ev is not None
        hits += bool(ev.rejects)
    assert_level(hits, reps, lo, hi)
