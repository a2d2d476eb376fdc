"""A cheap, exact-safe pre-check of a window's effect against its signal's minimum effect.

A test round under no drift ends at the effect check (:attr:`WindowView.effect
<driftscope_llm.services.drift.effects.WindowView.effect>`): no window test may raise while the
effect is below the signal's minimum. For a continuous signal that check walks the merged ECDFs
of window and reference, the costliest step of a quiet stream. :meth:`EffectGate.certainly_below`
answers "the effect cannot reach the minimum" from an upper bound of the same Wasserstein-1
distance, by one of three routes:

* the quantile form ``W₁(w, r) = ∫₀¹ |Q_w(u) - Q_r(u)| du`` (Vallender 1973): with ``m`` window
  and ``n`` reference values both quantile functions are steps on the merged grid
  ``{i/m} ∪ {j/n}``, so ``W₁`` is one sort, one gather and one dot product (the grid laid out
  once, for the full window);
* between two rounds of a full window, the triangle inequality: the window ``w'`` is ``w`` with
  its oldest ``q`` values ``R`` replaced by ``q`` new ones ``A``; keeping the common values in
  place and matching ``A`` to ``R`` in sorted order is a coupling, so
  ``W₁(w', r) ≤ W₁(w, r) + Σ|A₍ᵢ₎ - R₍ᵢ₎| / m``: two sorts of ``q`` values. The bound is carried
  from round to round and recomputed by the quantile form when it no longer decides;
* :func:`plan_rounds`: the same steps for every test round a batch will reach, of every signal
  at once (two sorts of one array), so a batch pays a few array operations for all its rounds.

It says ``True`` only when the bound is below the minimum by far more than the rounding error of
any of these sums (a relative ``1e-9`` and ``1e-9`` of the reference's magnitude per round,
against ``~1e-13``; sums of non-negative terms are accurate relative to their value), so the
monitor raises and records exactly what it would without it; otherwise the full effect is
computed as before. Booleans: the true count gives the rate exactly. Categories: the total
variation from the window's running counts (in another summation order, so with a margin).
Embeddings, and a continuous window still filling, have no pre-check.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift.effects import WindowView, continuous_scale
from driftscope_llm.services.drift.reference import (
    BooleanReference,
    CategoricalReference,
    ContinuousReference,
    SignalReference,
)
from driftscope_llm.services.drift.settings import SignalConfig
from driftscope_llm.services.drift.window import SignalWindow

__all__ = ["EffectGate", "plan_rounds"]

FloatArray = npt.NDArray[np.float64]
IntpArray = npt.NDArray[np.intp]


class EffectGate:
    """One signal's pre-check (module docstring); it keeps the bound carried between rounds."""

    __slots__ = ("_at", "_bound", "_config", "_grid", "_last", "_limit", "_plan", "_reference",
                 "_shares", "_span")

    def __init__(self, config: SignalConfig, reference: SignalReference) -> None:
        self._config = config
        self._reference = reference
        # (window length, window index, reference value, length) per cell of the merged grid
        self._grid: tuple[int, IntpArray, FloatArray, FloatArray] | None = None
        self._last: FloatArray | None = None  # the window at the last round, oldest first
        self._at = 0  # the window's append count then
        self._bound = math.inf  # an upper bound of W₁(that window, reference)
        self._limit = math.nan
        self._span = 0.0
        # planned rounds: append count → (round, carried steps so far, window at the round)
        self._plan: dict[int, tuple[int, float, FloatArray]] = {}
        self._shares: dict[Any, float] = {}
        if isinstance(reference, ContinuousReference) and reference.n:
            scale = continuous_scale(config, reference)
            if scale > 0:
                self._limit = config.min_effect * scale * (1.0 - 1e-9)
                self._span = max(abs(float(reference.values[0])),
                                 abs(float(reference.values[-1])))
        if isinstance(reference, CategoricalReference) and reference.n:
            n_ref = reference.n
            self._shares = {c: k / n_ref for c, k in reference.counts.items()}

    def _quantile_w1(self, ws: FloatArray, r: FloatArray) -> float:
        """``W₁`` of a sorted window against the sorted reference, by the quantile form."""
        m, n = ws.size, r.size
        if self._grid is None or self._grid[0] != m:
            # breakpoints of both step functions, in units of 1/(m·n): exact integers
            ends = np.union1d(np.arange(1, m + 1) * n, np.arange(1, n + 1) * m)
            self._grid = (m, (ends - 1) // n, r[(ends - 1) // m],
                          np.diff(ends, prepend=0) / float(m * n))
        _, a, rb, lens = self._grid
        return float(np.abs(ws[a] - rb) @ lens)

    def certainly_below(self, view: WindowView) -> bool:
        """True when the window's effect certainly does not reach the signal's minimum."""
        ref, window = self._reference, view.window
        if isinstance(ref, ContinuousReference):
            return self._continuous_below(view, ref)
        if isinstance(ref, BooleanReference):
            config = self._config
            n = len(window)
            delta = window.count_nonzero() / n - ref.rate
            rel = abs(delta) / ref.rate if ref.rate > 0 else (math.inf if delta else 0.0)
            return not (abs(delta) >= config.min_effect and rel >= config.min_relative_effect)
        if self._shares and len(window):  # the total variation, summed in another order
            shares, n, tv = self._shares, len(window), 0.0
            counts = window.live_category_counts()
            for c, k in counts.items():
                tv += abs(k / n - shares.get(c, 0.0))
            for c, share in shares.items():
                if c not in counts:
                    tv += share
            return 0.5 * tv + 1e-9 < self._config.min_effect
        return False

    def _continuous_below(self, view: WindowView, ref: ContinuousReference) -> bool:
        window = view.window
        if not self._limit > 0 or len(window) < window.capacity:
            return False
        now, then = self._plan.get(window.appended), self._plan.get(self._at)
        if now is not None and then is not None and then[0] < now[0]:
            bound = self._bound + (now[1] - then[1]) * (1.0 + 1e-9) + 1e-12 * now[1]
            if bound < self._limit:
                self._last, self._at, self._bound = now[2], window.appended, bound
                return True
        cur = view.floats()
        m, q = cur.size, window.appended - self._at
        last = self._last
        if last is not None and last.size == m and 0 < q < m:
            d, gone = cur[m - q :].copy(), last[:q].copy()
            d.sort()
            gone.sort()
            d -= gone  # each difference within one rounding of its value
            bound = self._bound + float(np.abs(d, out=d).sum()) / m * (1.0 + 1e-9) + (
                1e-9 * self._span)
            if bound < self._limit:
                self._last, self._at, self._bound = cur, window.appended, bound
                return True
        ws = view.sorted()
        span = max(self._span, abs(float(ws[0])), abs(float(ws[-1])))
        self._last, self._at = cur, window.appended
        self._bound = self._quantile_w1(ws, ref.values) + 1e-9 * span
        return self._bound < self._limit


def plan_rounds(jobs: list[tuple[EffectGate, SignalWindow, FloatArray]], every: int) -> None:
    """Carried-bound steps for the test rounds a batch will reach, for several signals at once.

    Each job is a continuous signal's gate, its full window and the values the batch will append
    to it; test rounds fall every ``every`` values (the first after ``every - new_since_test``).
    Between two rounds the ``every`` oldest values leave and ``every`` new ones come; the first
    round's step starts from the gate's last round when that was ``every`` values before. All
    those steps are two sorts of one ``(steps, every)`` array; :meth:`EffectGate.certainly_below`
    then finds them by the window's append count, whether or not the rounds between were asked.
    """
    pieces: list[FloatArray] = []
    gone_at: list[int] = []
    came_at: list[int] = []
    owners: list[tuple[EffectGate, SignalWindow, list[int], list[int], int, bool]] = []
    size = 0
    for gate, window, upcoming in jobs:
        gate._plan = {}
        m = window.capacity
        if not gate._limit > 0 or len(window) < m or not 0 < every < m:
            continue
        first = max(every - window.new_since_test, 1) - 1
        at = list(range(first, upcoming.size, every))
        if not at:
            continue
        base = size  # the window, then what comes, oldest first, from here in the joint array
        pieces += [*window.ordered_parts(), upcoming]
        size += m + upcoming.size
        row0 = len(gone_at)
        last = gate._last
        chained = last is not None and last.size == m and (
            window.appended + at[0] + 1 - gate._at == every)  # the last round, every values ago
        if chained:
            assert last is not None
            pieces.append(last)
            gone_at.append(size)
            came_at.append(base + m + at[0] + 1 - every)
            size += m
        for r in range(1, len(at)):
            gone_at.append(base + at[r - 1] + 1)
            came_at.append(base + m + at[r - 1] + 1)
        owners.append((gate, window, at, list(range(row0, len(gone_at))), base, chained))
    if not gone_at:
        return
    joint = np.concatenate(pieces)
    cols = np.arange(every)
    gone = joint[np.asarray(gone_at)[:, None] + cols]
    came = joint[np.asarray(came_at)[:, None] + cols]
    gone.sort(axis=1)
    came.sort(axis=1)
    came -= gone  # each difference within one rounding of its value
    sums = np.abs(came, out=came).sum(axis=1).tolist()
    for gate, window, at, rows, base, chained in owners:
        m = window.capacity
        steps = [sums[i] / m * (1.0 + 1e-9) + 1e-9 * gate._span for i in rows]
        if chained:
            assert gate._last is not None
            gate._plan[gate._at] = (-1, 0.0, gate._last)
        carried = 0.0
        for r, pos in enumerate(at):
            if chained or r > 0:
                carried += steps.pop(0)
            end = base + pos + 1 + m
            gate._plan[window.appended + pos + 1] = (r, carried, joint[end - m : end])
