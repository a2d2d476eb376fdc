"""Page's two-sided CUSUM over arrays of increments, with the sequential recursion's exact state.

:class:`~driftscope_llm.services.drift.sequential.TwoSidedCusum` updates on one value at a time
(pure Python). A batch of values instead runs here:

* :func:`cusum_pass` computes, for both sides and any number of detectors at once, the value
  ``S_{t-1} + z_t`` before truncation at every event, from a cumulative sum and a running minimum
  (Lindley's form of the recursion). It agrees with the sequential recursion up to rounding.
* Where no side comes within rounding of its threshold, and no value before truncation comes
  within rounding of 0, the cumulative form took every truncation decision the sequential
  recursion takes; the exact statistic is then the sequential sum of the increments since the
  last truncation, and the change segment the sequential sum of the raw values since the last
  start (:func:`_side_state`), both added in the recursion's order, so the state matches bit for
  bit.
* At an event where a side may reach its threshold the detector's own crossing check runs on the
  exact state (:meth:`BatchCusum.check`); at an event whose truncation is within rounding of 0
  the detector's own scalar step takes it (:meth:`BatchCusum.advance`). The pass then resumes.

Rounding: each cumulative sum carries at most a few ulps of ``Σ|z|`` per event, so "within
rounding" is ``_TOL · k · (S⁺ + S⁻ + k · max|z|)`` for a chunk of ``k`` events, far below any
real statistic's spacing. Integer increments (the Bernoulli CUSUM's lattice) add exactly: no
tolerance at all.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift.detector import Finding

__all__ = ["BatchCusum", "advance_batch", "advance_together", "cusum_pass"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_TOL = 2e-15
"""Per event and unit of ``Σ|z|``: a bound on how far a cumulative-sum decision can be from the
sequential one (a few ulps per addition)."""


class BatchCusum(Protocol):
    """What the array pass needs of a two-sided CUSUM detector."""

    lattice: bool  # every increment is an integer: sums are exact

    def increments_batch(self, values: FloatArray, indices: IntArray) -> FloatArray: ...

    def scores_batch(self, values: FloatArray, indices: IntArray) -> FloatArray | None: ...

    def k_values(self) -> tuple[float, float]: ...

    def cusum_state(self) -> tuple[float, float, list[Any], list[Any]]: ...

    def set_cusum_state(self, sp: float, sn: float, up: list[Any], dn: list[Any]) -> None: ...

    def thresholds(self) -> tuple[float, float]: ...

    def advance(self, inc_up: float, inc_dn: float, value: float,
                index: int) -> Finding | None: ...

    def check(self, index: int) -> Finding | None: ...

    def rearm(self) -> None: ...


class _Stop(Enum):
    END = "end"  # the chunk is done
    CANDIDATE = "candidate"  # a side may have reached its threshold here
    AMBIGUOUS = "ambiguous"  # the next event's truncation is within rounding of 0


def cusum_pass(inc: FloatArray, start: FloatArray) -> FloatArray:
    """Pre-truncation values ``S_{t-1} + z_t`` of every row of ``inc`` (one side of one detector
    per row, ``start`` its ``S_0 ≥ 0``): with ``P_t = S_0 + z_1 + … + z_t``, Page's recursion
    ``S_t = max(0, S_{t-1} + z_t)`` is ``S_t = P_t - min(0, min_{j≤t} P_j)``, so the value before
    truncation is ``P_t - min(0, min_{j<t} P_j)``."""
    rows, k = inc.shape
    p = np.empty((rows, k + 1))
    p[:, 0] = start
    p[:, 1:] = inc
    p.cumsum(axis=1, out=p)
    low = np.minimum.accumulate(np.minimum(p, 0.0), axis=1)
    pre: FloatArray = p[:, 1:] - low[:, :-1]
    return pre


def _seq_sum(first: float, rest: FloatArray) -> float:
    """``((first + r₀) + r₁) + …`` in that order, as a running ``+=`` adds them."""
    if rest.size < 24:
        s = first
        for x in rest.tolist():
            s += x
        return s
    return float(np.concatenate(([first], rest)).cumsum()[-1])


def _side_state(reset: BoolArray, inc: FloatArray, vals: FloatArray, idx: IntArray,
                s0: float, seg: list[Any], since: int | None = None) -> tuple[float, list[Any]]:
    """One side's exact statistic and change segment after the first ``len(reset)`` events of a
    chunk, given where the sequential recursion truncated: the statistic is the sequential sum
    of the increments since the last truncation; the segment holds the raw values of the last
    run of untruncated events that began at 0 (``[start index, sum, count]``). ``since``: how
    many events follow the last truncation (``-1``: none truncated), when the caller knows."""
    size = reset.size
    rev = reset[::-1]
    if since is None:
        i = int(rev.argmax())
        since = i if rev[i] else -1
    i = since
    if i < 0:  # no truncation: the statistic and its segment carry on
        s = _seq_sum(s0, inc[:size])
        if s0 == 0.0:
            return s, [int(idx[0]), _seq_sum(float(vals[0]), vals[1:size]), size]
        return s, [seg[0], _seq_sum(seg[1], vals[:size]), seg[2] + size]
    if i > 0:  # a run began after the last truncation and lasts to the end
        st = size - i
        return (_seq_sum(float(inc[st]), inc[st + 1 : size]),
                [int(idx[st]), _seq_sum(float(vals[st]), vals[st + 1 : size]), i])
    # the chunk ends truncated: the segment is the last run, which ended before the end
    j = int(rev.argmin())
    if rev[j]:  # every event truncated: nothing ran
        return 0.0, seg
    last = size - 1 - j  # the run's last event
    before = reset[:last][::-1]
    q = int(before.argmax()) if last else 0
    if last and before[q]:
        st = last - q
    elif s0 > 0.0:  # the run began before the chunk: the running segment goes on
        return 0.0, [seg[0], _seq_sum(seg[1], vals[: last + 1]), seg[2] + last + 1]
    else:
        st = 0
    return 0.0, [int(idx[st]), _seq_sum(float(vals[st]), vals[st + 1 : last + 1]), last - st + 1]


def _settle(det: BatchCusum, reset: BoolArray, inc: FloatArray, vals: FloatArray, idx: IntArray,
            state: tuple[float, float, list[Any], list[Any]],
            since: tuple[int | None, int | None] = (None, None)) -> None:
    """Give ``det`` its exact state after the events of ``reset`` (rows: S⁺, S⁻)."""
    sp, up = _side_state(reset[0], inc[0], vals, idx, state[0], state[2], since[0])
    sn, dn = _side_state(reset[1], inc[1], vals, idx, state[1], state[3], since[1])
    det.set_cusum_state(sp, sn, up, dn)


def _tolerance(det: BatchCusum, k: int, sp: float, sn: float, bound: float) -> float:
    return 0.0 if det.lattice else _TOL * k * (sp + sn + k * bound)


def _pass(det: BatchCusum, inc: FloatArray, vals: FloatArray, idx: IntArray,
          bound: float) -> tuple[int, _Stop]:
    """Advance ``det`` exactly through event ``t`` of the chunk and say why it stopped."""
    k = inc.shape[1]
    state = det.cusum_state()
    hp, hn = det.thresholds()
    pre = cusum_pass(inc, np.array(state[:2]))
    tol = _tolerance(det, k, state[0], state[1], bound)
    stop, t_end = _Stop.END, k - 1
    top = pre.max(axis=1)
    if top[0] >= hp - tol or top[1] >= hn - tol:
        hit = (pre[0] >= hp - tol) | (pre[1] >= hn - tol)
        t_end, stop = int(hit.argmax()), _Stop.CANDIDATE
    if tol > 0.0 and float(np.abs(pre[:, : t_end + 1]).min()) <= tol:
        col = np.asarray((np.abs(pre[:, : t_end + 1]) <= tol).any(axis=0))
        t_end, stop = int(col.argmax()) - 1, _Stop.AMBIGUOUS
    if t_end >= 0:
        _settle(det, pre[:, : t_end + 1] <= 0.0, inc, vals, idx, state)
    return t_end, stop


def advance_batch(det: BatchCusum, values: FloatArray, indices: IntArray,
                  inc: FloatArray | None = None) -> list[tuple[int, Finding]]:
    """The detector's ``update`` on each value in turn, re-arming after every finding (as the
    monitor does): ``(position, finding)`` pairs, and the same state bit for bit."""
    if inc is None:
        inc = det.increments_batch(values, indices)
    bound = 0.0 if det.lattice else float(np.abs(inc).max())
    found: list[tuple[int, Finding]] = []
    hp, hn = det.thresholds()
    pos, k = 0, values.size
    while pos < k:
        sp, sn, _, _ = det.cusum_state()
        if sp >= hp or sn >= hn:  # over a threshold whose effect check failed: a pass would
            t, stop = -1, _Stop.AMBIGUOUS  # stop at once, so step this event as update does
        else:
            t, stop = _pass(det, inc[:, pos:], values[pos:], indices[pos:], bound)
        j = pos + t
        if stop is _Stop.AMBIGUOUS:  # one exact scalar step at the next event
            j += 1
            finding = det.advance(float(inc[0, j]), float(inc[1, j]), float(values[j]),
                                  int(indices[j]))
        elif stop is _Stop.CANDIDATE:
            finding = det.check(int(indices[j]))
        else:
            finding = None
        if finding is not None:
            det.rearm()
            found.append((j, finding))
        pos = j + 1
    return found


def _stacked_increments(jobs: list[tuple[BatchCusum, FloatArray, IntArray]]) -> FloatArray:
    """Rows ``2n`` and ``2n + 1``: job ``n``'s increments; detectors that give scores share
    the subtraction of their ``k`` (the same floats as each alone)."""
    k = jobs[0][1].size
    inc = np.empty((2 * len(jobs), k))
    scored: list[int] = []
    zs: list[FloatArray] = []
    for n, (det, values, indices) in enumerate(jobs):
        z = det.scores_batch(values, indices)
        if z is None:
            inc[2 * n : 2 * n + 2] = det.increments_batch(values, indices)
        else:
            scored.append(n)
            zs.append(z)
    if zs:
        ks = np.array([jobs[n][0].k_values() for n in scored])
        rows = 2 * np.array(scored)
        z_all = np.stack(zs)
        inc[rows] = z_all - ks[:, :1]
        inc[rows + 1] = -z_all - ks[:, 1:]
    return inc


def advance_together(jobs: list[tuple[BatchCusum, FloatArray, IntArray]],
                     ) -> list[list[tuple[int, Finding]]]:
    """:func:`advance_batch` for several detectors over the same number of values: one
    cumulative pass for all of them; a detector whose pass stops (a possible crossing, a
    doubtful truncation) goes on alone from its unchanged state."""
    if not jobs:
        return []
    k, rows = jobs[0][1].size, 2 * len(jobs)
    inc = _stacked_increments(jobs)
    incs = [inc[2 * n : 2 * n + 2] for n in range(len(jobs))]
    states = [det.cusum_state() for det, _, _ in jobs]
    pre = cusum_pass(inc, np.array([s for st in states for s in st[:2]]))
    top = pre.max(axis=1).tolist()
    near0 = np.abs(pre).min(axis=1).tolist()
    bounds = np.abs(inc).max(axis=1).tolist()
    reset = pre <= 0.0
    rev = reset[:, ::-1]
    first = rev.argmax(axis=1)
    since = np.where(rev[np.arange(rows), first], first, -1).tolist()
    out: list[list[tuple[int, Finding]]] = []
    for n, (det, values, indices) in enumerate(jobs):
        st, r = states[n], 2 * n
        hp, hn = det.thresholds()
        tol = _tolerance(det, k, st[0], st[1], max(bounds[r], bounds[r + 1]))
        if (top[r] >= hp - tol or top[r + 1] >= hn - tol
                or (tol > 0.0 and min(near0[r], near0[r + 1]) <= tol)):
            out.append(advance_batch(det, values, indices, incs[n]))
            continue
        _settle(det, reset[r : r + 2], incs[n], values, indices, st, (since[r], since[r + 1]))
        out.append([])
    return out
