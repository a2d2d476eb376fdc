"""False-alarm control: the budget split, CUSUM run lengths, and null thresholds.

Budget split (combined control across signals × detectors × segments × models)
------------------------------------------------------------------------------
The budget ``B`` is an expected number of false alarms per event of one model. Each stream event
belongs to ``streams_per_event`` streams, and a stream runs ``J`` (signal, detector) pairs, so each
pair gets ``b = B / (streams_per_event · J)`` per stream event (Bonferroni: expected false alarms
add whatever the dependence). A *window* test runs at most once per ``test_every`` stream events,
so it gets a per-test level ``α = b · test_every``. A *sequential* detector updates at most once
per stream event, so it needs an in-control average run length (ARL) of at least ``1/b``
observations; two-sided ones split that between their sides (``2/b`` each).

Run lengths (Brook & Evans 1972)
--------------------------------
For a one-sided CUSUM ``S_t = max(0, S_{t-1} + X_t)`` with i.i.d. increments, alarm at ``S_t ≥ h``,
the ARL from ``S_0 = 0`` is computed by discretising ``[0, h)`` into cells and solving the Markov
chain's fundamental system ``(I - Q) L = 1``. Increments come from an empirical null distribution
(reference scores), so no normality is assumed. The reference is itself a sample: its estimate of
the in-control mean is off by about ``sd/√n``, which shortens the ARL on average (Jones, Champ &
Rigdon 2004). :func:`calibrate_mixture` therefore solves for ``h`` with the false-alarm *rate*
``1/ARL`` averaged over a mixture of null laws: Bayesian-bootstrap draws of the reference
(:func:`driftscope_llm.services.drift.sequential.calibrate_sides`), or a Gauss-Hermite rule over
the error of the mean (:func:`location_mixture`, :func:`calibrate_cusum`).

Wasserstein null (Borell-TIS)
-----------------------------
Under no drift ``√m · W1(window, reference)``, ``m = wn/(w+n)``, tends to ``∫|B(F(x))| dx`` for a
Brownian bridge ``B``; that norm has mean ``√(2/π) ∫ √(F(1-F)) dx`` and, by the Borell-TIS
inequality, a Gaussian upper tail with variance ``sup_f Var ∫ f B(F) dx = Var(X)``. Hence the
level-``α`` threshold ``(E₀ + σ √(2 ln 1/α)) / √m``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.linalg import solve_toeplitz

from driftscope_llm.services.drift.settings import DriftSettings
from driftscope_llm.services.errors import DetectorError

__all__ = [
    "Budget",
    "NullMixture",
    "budget_pairs",
    "calibrate_cusum",
    "calibrate_mixture",
    "cusum_arl",
    "gauss_hermite",
    "location_mixture",
    "mixture_arl",
    "permutation_pvalue",
    "split_budget",
    "wasserstein_null",
]

FloatArray = npt.NDArray[np.float64]

# 3-point Gauss-Hermite rule for E[f(Z)], Z ~ N(0, 1).
_GH_NODES = (-math.sqrt(3.0), 0.0, math.sqrt(3.0))
_GH_WEIGHTS = (1.0 / 6.0, 2.0 / 3.0, 1.0 / 6.0)


@dataclass(frozen=True, slots=True)
class Budget:
    """The false-alarm allowance of one (signal, detector) pair of a stream.

    ``per_event``: expected false alarms per stream event; ``alpha``: level of one window test;
    ``arl``: in-control average run length (in observations) a sequential detector must reach.
    """

    per_event: float
    alpha: float
    arl: float


def budget_pairs(settings: DriftSettings) -> list[tuple[str, str]]:
    """Every (signal, detector) pair the settings run, in a stable order."""
    return [(s, d) for s in sorted(settings.signals) for d in settings.signals[s].detectors]


def split_budget(settings: DriftSettings, share: float = 1.0) -> dict[tuple[str, str], Budget]:
    """Split the per-model budget equally over the stream's (signal, detector) pairs.

    ``share`` (in (0, 1]) is the part of the model's budget this stream may spend per event,
    when each event feeds several streams (the collector gives the model-level stream half and
    each segment family an equal part of the other half).
    """
    if not 0.0 < share <= 1.0:
        raise DetectorError(f"budget share must be in (0, 1], got {share}")
    pairs = budget_pairs(settings)
    per_model_event = share * settings.max_false_alarms_per_100k / 100_000.0
    b = per_model_event / (settings.streams_per_event * max(1, len(pairs)))
    alpha = min(0.5, b * settings.test_every)
    return {p: Budget(per_event=b, alpha=alpha, arl=1.0 / b) for p in pairs}


def cusum_arl(
    increments: FloatArray, h: float, states: int = 100, probs: FloatArray | None = None
) -> float:
    """ARL of ``S_t = max(0, S_{t-1} + X)`` from 0 until ``S ≥ h`` (Brook & Evans 1972).

    ``X`` takes the sorted values ``increments`` with probabilities ``probs`` (uniform when
    ``None``). Returns ``inf`` when the chain cannot reach ``h``. The cells of ``(0, h)`` share a
    width, so their block of the transition matrix is Toeplitz: it is solved by Levinson
    recursion (O(states²), no BLAS threads) and the atom at zero by elimination.
    """
    n = increments.size
    if n == 0 or h <= 0:
        raise DetectorError("cusum_arl needs increments and a positive threshold")
    if increments[-1] <= 0:
        return math.inf
    m = states
    width = h / m
    cum = None if probs is None else np.concatenate(([0.0], np.cumsum(probs)))

    def cdf(x: npt.NDArray[np.floating[Any]]) -> FloatArray:
        pos = np.searchsorted(increments, x, side="right")
        out: FloatArray = pos / n if cum is None else cum[pos]
        return out

    # Cell i (centre (i+½)w) to cell j: P(X ∈ ((j-i-½)w, (j-i+½)w]), a function of j - i.
    offsets = np.arange(-m, m + 1)
    band = cdf((offsets + 0.5) * width) - cdf((offsets - 0.5) * width)
    eye = (np.arange(m) == 0).astype(np.float64)
    col, row = eye - band[m - np.arange(m)], eye - band[m + np.arange(m)]
    to_zero = cdf(-(np.arange(m) + 0.5) * width)
    try:
        sol = solve_toeplitz((col, row), np.column_stack((np.ones(m), to_zero)))
    except np.linalg.LinAlgError:
        return math.inf
    a, b = sol[:, 0], sol[:, 1]
    from_zero = cdf(np.arange(m + 1) * width)
    q00, q0c = from_zero[0], np.diff(from_zero)
    denom = 1.0 - q00 - float(q0c @ b)
    value = (1.0 + float(q0c @ a)) / denom if denom > 0 else math.inf
    return value if value > 0 and math.isfinite(value) else math.inf


NullMixture = list[tuple[FloatArray, FloatArray | None, float]]
"""Null increment laws ``(sorted values, probabilities or None, weight)``; weights sum to 1."""


def mixture_arl(nulls: NullMixture, h: float, states: int = 100) -> float:
    """ARL whose false-alarm rate ``1/ARL`` is averaged over the mixture of null laws."""
    rate = 0.0
    for values, probs, weight in nulls:
        rate += weight / cusum_arl(values, h, states, probs)
    return math.inf if rate <= 0 else 1.0 / rate


def location_mixture(increments: FloatArray, shift_sd: float) -> NullMixture:
    """The null law shifted by a N(0, shift_sd²) error of its mean (3-point Gauss-Hermite)."""
    inc = np.sort(np.asarray(increments, dtype=np.float64))
    if shift_sd <= 0:
        return [(inc, None, 1.0)]
    return [(inc + node * shift_sd, None, w)
            for node, w in zip(_GH_NODES, _GH_WEIGHTS, strict=True)]


def gauss_hermite() -> list[tuple[float, float]]:
    """Nodes and weights of the 3-point rule for ``E[f(Z)]``, ``Z ~ N(0, 1)``."""
    return list(zip(_GH_NODES, _GH_WEIGHTS, strict=True))


def calibrate_cusum(
    increments: FloatArray, target_arl: float, *, shift_sd: float = 0.0, states: int = 100
) -> float:
    """An ``h`` whose averaged in-control ARL is 0-10 % above ``target_arl``.

    ``increments``: null increments (any order) with negative mean; ``shift_sd``: standard
    error of the reference's estimate of their mean.
    """
    return calibrate_mixture(location_mixture(increments, shift_sd), target_arl, states=states)


def calibrate_mixture(nulls: NullMixture, target_arl: float, *, states: int = 100) -> float:
    """As :func:`calibrate_cusum` for an explicit mixture of null laws."""
    key = tuple((v.tobytes(), None if p is None else p.tobytes(), w) for v, p, w in nulls)
    return _calibrate_cached(key, float(target_arl), int(states))


@lru_cache(maxsize=256)
def _calibrate_cached(
    key: tuple[tuple[bytes, bytes | None, float], ...], target: float, states: int
) -> float:
    nulls: NullMixture = [
        (np.frombuffer(v, dtype=np.float64),
         None if p is None else np.frombuffer(p, dtype=np.float64), w) for v, p, w in key
    ]
    values, probs, _ = nulls[len(nulls) // 2]
    if values.size == 0:
        raise DetectorError("cannot calibrate a CUSUM without null increments")
    pr = np.full(values.size, 1.0 / values.size) if probs is None else probs
    mean = float(np.dot(pr, values))
    spread = max(math.sqrt(float(np.dot(pr, (values - mean) ** 2))), abs(mean), 1e-12)
    if mean >= 0:
        raise DetectorError("CUSUM null increments must drift down (reference value k too small)")
    log_target = math.log(target)

    def f(h: float) -> float:
        arl = mixture_arl(nulls, h, states)
        return math.inf if math.isinf(arl) else math.log(arl) - log_target

    # Siegmund's approximation as a first guess: ARL ≈ exp(θh)/(θ|μ|), θ = 2|μ|/σ².
    theta = 2.0 * abs(mean) / spread**2
    guess = max(spread, (log_target + math.log(max(theta * abs(mean), 1e-300))) / theta)
    found = _secant(f, guess)
    return found if found is not None else _bracket(f, guess)


def _secant(f: Callable[[float], float], guess: float) -> float | None:
    """Secant steps on ``ln ARL(h) - ln target`` (nearly linear in ``h``); ``None`` if they do
    not land within [0, 0.1) — an ARL 0-10 % above target — in a few steps."""
    h0, f0 = guess, f(guess)
    if math.isinf(f0):
        return None
    h1 = h0 * (1.1 if f0 < 0 else 1.0 / 1.1)
    f1 = f(h1)
    for _ in range(8):
        if 0.0 <= f1 < 0.1:
            return h1
        if math.isinf(f1) or f1 == f0:
            return None
        slope = (f1 - f0) / (h1 - h0)
        if slope <= 0:
            return None
        h2 = h1 - (f1 - 0.05) / slope
        if h2 <= 0:
            return None
        h0, f0, h1, f1 = h1, f1, h2, f(h2)
    return None


def _bracket(f: Callable[[float], float], guess: float) -> float:
    """Bisection on a bracket, to 0.5 % in ``h``; returns an ``h`` with ``f(h) ≥ 0``."""
    lo, hi = guess, guess
    f_lo = f_hi = f(guess)
    for _ in range(60):
        if f_lo <= 0:
            break
        lo /= 1.5
        f_lo = f(lo)
    for _ in range(60):
        if f_hi >= 0:
            break
        hi *= 1.5
        f_hi = f(hi)
    if f_lo > 0:
        return lo
    if f_hi < 0:
        raise DetectorError("cannot reach the target run length (increments too heavy-tailed)")
    while hi - lo > 5e-3 * hi:
        mid = 0.5 * (lo + hi)
        if f(mid) >= 0:
            hi = mid
        else:
            lo = mid
    return hi


def permutation_pvalue(observed: float, permuted: FloatArray) -> float:
    """Permutation p-value that counts the observed statistic: ``(1 + #{T* ≥ T}) / (1 + B)``."""
    return (1.0 + float(np.count_nonzero(permuted >= observed))) / (1.0 + permuted.size)


@dataclass(frozen=True, slots=True)
class WassersteinNull:
    """Reference constants of the Borell-TIS bound: ``e0`` and ``sigma`` (module docstring)."""

    e0: float
    sigma: float

    def threshold(self, w: int, n: int, alpha: float) -> float:
        m = w * n / (w + n)
        return (self.e0 + self.sigma * math.sqrt(2.0 * math.log(1.0 / alpha))) / math.sqrt(m)

    def p_value(self, w1: float, w: int, n: int) -> float:
        """Upper bound on ``P(W1 ≥ w1)`` under no drift."""
        u = math.sqrt(w * n / (w + n)) * w1 - self.e0
        if u <= 0 or self.sigma <= 0:
            return 1.0
        return min(1.0, math.exp(-u * u / (2.0 * self.sigma**2)))

    def to_dict(self) -> dict[str, float]:
        return {"e0": self.e0, "sigma": self.sigma}

    @classmethod
    def from_dict(cls, d: Mapping[str, float]) -> WassersteinNull:
        return cls(float(d["e0"]), float(d["sigma"]))


def wasserstein_null(sorted_reference: FloatArray) -> WassersteinNull:
    """Constants of the Borell-TIS threshold from a sorted reference sample."""
    n = sorted_reference.size
    if n < 2:
        return WassersteinNull(0.0, 0.0)
    f = np.arange(1, n) / n
    gaps = np.diff(sorted_reference)
    e0 = math.sqrt(2.0 / math.pi) * float(np.sum(np.sqrt(f * (1.0 - f)) * gaps))
    return WassersteinNull(e0, float(sorted_reference.std()))
