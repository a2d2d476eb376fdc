"""Two-sided CUSUM machinery shared by the sequential detectors.

Page's CUSUM (Page 1954) on a per-event score ``z``: ``S⁺ = max(0, S⁺ + z - k⁺)`` watches for an
increase, ``S⁻ = max(0, S⁻ - z - k⁻)`` for a decrease; a side raises when it reaches its threshold
``h``. Subclasses choose the score (reference normal scores, standardised raw values, a
log-likelihood ratio) and place ``k`` at the signal's minimum effect, so that under any change
smaller than the minimum effect the statistic drifts *down*. Each ``h`` is calibrated with
:func:`services.drift.calibration.calibrate_cusum` to twice the pair's budgeted ARL (two sides
share the budget).

The event at which a side last left zero estimates the change point; the mean of the raw values
since then estimates the changed level, and an alarm also needs that estimate to differ from the
reference by at least the minimum effect, in the direction of the side.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift.calibration import NullMixture, calibrate_mixture
from driftscope_llm.services.drift.detector import DetectorContext, Finding, SequentialDetector

__all__ = ["TwoSidedCusum", "calibrate_sides", "cusum_pass", "update_many"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_TOL = 2e-15
"""Per event and unit of ``Σ|increment|``: a bound on how far a truncation decision computed from
cumulative sums can be from the sequential one (a few ulps per addition; see :func:`cusum_pass`)."""


class _Stop(Enum):
    END = "end"  # the chunk is done
    CANDIDATE = "candidate"  # a side may have reached its threshold here
    AMBIGUOUS = "ambiguous"  # the next event's truncation is within rounding of 0


def cusum_pass(inc: FloatArray, start: tuple[float, float]) -> FloatArray:
    """Both sides' pre-truncation values ``S_{t-1} + z_t`` for a chunk of increments at once.

    With ``P_t = S_0 + z_1 + … + z_t``, Page's recursion ``S_t = max(0, S_{t-1} + z_t)`` is
    ``S_t = P_t - min(0, min_{j≤t} P_j)`` (Lindley's form), so the value before truncation is
    ``P_t - min(0, min_{j<t} P_j)``: a cumulative sum and a running minimum. The result differs
    from the sequential recursion by rounding only (at most a few ulps of ``Σ|z|`` per event);
    callers treat values that close to 0 or to a threshold as undecided.
    """
    k = inc.shape[1]
    p = np.empty((2, k + 1))
    p[0, 0], p[1, 0] = start
    p[:, 1:] = inc
    np.cumsum(p, axis=1, out=p)
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
    return float(np.cumsum(np.concatenate(([first], rest)))[-1])


def _side_state(reset: npt.NDArray[np.bool_], inc: FloatArray, vals: FloatArray, idx: IntArray,
                s0: float, seg: list[Any]) -> tuple[float, list[Any]]:
    """One side's exact statistic and change segment after the events of ``reset`` (the
    chunk's first ``len(reset)``), given where the sequential recursion truncated (decided by the
    caller): the statistic is the sequential sum of the increments since the last truncation;
    the segment holds the raw values of the last run of untruncated events that began at 0."""
    size = reset.size
    rev = reset[::-1]
    i = int(rev.argmax())
    if not rev[i]:  # no truncation: the statistic and its segment carry on
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


def update_many(det: SequentialDetector, values: FloatArray,
                indices: IntArray) -> list[tuple[int, Finding]]:
    """``det.update`` on each value, re-arming after each finding: the batched path of a
    :class:`TwoSidedCusum`, else one call per value (any other sequential detector)."""
    if isinstance(det, TwoSidedCusum):
        return det.update_batch(values, indices)
    found: list[tuple[int, Finding]] = []
    for j, (x, i) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
        finding = det.update(x, i)
        if finding is not None:
            det.rearm()
            found.append((j, finding))
    return found

_GH = ((-math.sqrt(3.0), 1.0 / 6.0), (0.0, 2.0 / 3.0), (math.sqrt(3.0), 1.0 / 6.0))


def calibrate_sides(
    ctx: DetectorContext, scores: FloatArray, k_up: float | None, k_down: float | None,
) -> tuple[float | None, float | None]:
    """Thresholds ``(h⁺, h⁻)`` for the null law of ``scores`` and reference values ``k``; a side
    whose ``k`` is ``None`` is off. Each side gets ARL ``2 × budget.arl``.

    The null law of a new value's score is only known up to the reference's sampling error. The
    false-alarm rate is averaged over ``bootstrap_draws`` Bayesian-bootstrap draws of it (Rubin
    1981: Dirichlet(1, …, 1) weights on the atoms ``scores``). For rank scores this is exact:
    the probabilities with which a new value falls between consecutive reference order
    statistics are uniform spacings, Dirichlet(1, …, 1). It covers the error of the mean
    (which alone shortens run lengths, Jones, Champ & Rigdon 2004) and of the tails, which
    govern run lengths of millions of events.
    """
    target = 2.0 * ctx.budget.arl
    states = ctx.settings.arl_states
    draws = ctx.settings.bootstrap_draws
    weights = np.random.default_rng([ctx.seed & 0xFFFFFFFF, 7]).dirichlet(
        np.ones(scores.size), size=draws)

    def side(inc: FloatArray) -> float:
        order = np.argsort(inc, kind="stable")
        nulls: NullMixture = [(inc[order], w[order], 1.0 / draws) for w in weights]
        return calibrate_mixture(nulls, target, states=states)

    h_up = None if k_up is None else side(scores - k_up)
    h_down = None if k_down is None else side(-scores - k_down)
    return h_up, h_down


class TwoSidedCusum(SequentialDetector):
    """Base class: subclasses implement :meth:`calibrate`, :meth:`score` and :meth:`effect`.

    Calibration keys used here: ``k_up``, ``k_down``, ``h_up``, ``h_down`` (``None`` = side off)
    and ``disabled`` (a reason string, or ``None``).
    """

    def setup(self) -> None:
        c = self.calibration
        self.disabled: str | None = c.get("disabled")
        self._kp = float(c.get("k_up") or 0.0)
        self._kn = float(c.get("k_down") or 0.0)
        self._hp = math.inf if c.get("h_up") is None else float(c["h_up"])
        self._hn = math.inf if c.get("h_down") is None else float(c["h_down"])
        self._sp = self._sn = 0.0
        self._up = [-1, 0.0, 0]  # segment start index, sum of raw values, count
        self._dn = [-1, 0.0, 0]
        self._lattice = False  # True when every increment is an integer: arrays add exactly
        self.last_threshold = min(self._hp, self._hn)
        self.last_statistic = 0.0
        self.setup_score()

    def setup_score(self) -> None:
        """Build the score function's lookup structures from ``ctx`` and ``calibration``."""

    def score(self, x: float) -> float:
        """The per-event score ``z`` (subclasses using the default :meth:`increments`)."""
        raise NotImplementedError

    def increments(self, x: float, index: int) -> tuple[float, float]:
        """What ``x`` (at stream event ``index``) adds to ``(S⁺, S⁻)`` before truncation."""
        z = self.score(x)
        return z - self._kp, -z - self._kn

    def effect(self, segment_mean: float, side: int) -> tuple[float, bool]:
        """``(effect size, passes)`` of a changed level against the reference."""
        raise NotImplementedError

    @property
    def effect_unit(self) -> str:
        return "mean_shift"

    def update(self, value: Any, index: int) -> Finding | None:
        if self.disabled is not None:
            return None
        inc_up, inc_dn = self.increments(value, index)
        return self._advance(inc_up, inc_dn, value, index)

    def _advance(self, inc_up: float, inc_dn: float, value: Any, index: int) -> Finding | None:
        """Add the increments to ``(S⁺, S⁻)``, truncate at 0, track each side's segment, and
        report a crossing. Subclasses with a hot inlined score call this from ``update``."""
        s = self._sp + inc_up
        if s > 0.0:
            if self._sp == 0.0:
                self._up = [index, value, 1]
            else:
                seg = self._up
                seg[1] += value
                seg[2] += 1
            self._sp = s
        else:
            self._sp = 0.0
        s = self._sn + inc_dn
        if s > 0.0:
            if self._sn == 0.0:
                self._dn = [index, value, 1]
            else:
                seg = self._dn
                seg[1] += value
                seg[2] += 1
            self._sn = s
        else:
            self._sn = 0.0
        if self._sp >= self._hp:
            return self._crossing(1, index)
        if self._sn >= self._hn:
            return self._crossing(-1, index)
        return None

    def _check(self, index: int) -> Finding | None:
        """The crossing test that ends :meth:`_advance`, on the current state."""
        if self._sp >= self._hp:
            return self._crossing(1, index)
        if self._sn >= self._hn:
            return self._crossing(-1, index)
        return None

    # -- many values at once ------------------------------------------------------------------

    def increments_batch(self, values: FloatArray, indices: IntArray) -> FloatArray:
        """:meth:`increments` of many values: a ``(2, k)`` array (rows ``S⁺``, ``S⁻``).

        This default calls :meth:`increments` per value; subclasses with a vectorised score
        override it, and must give the same floats bit for bit.
        """
        out = np.empty((2, values.size))
        for j, (x, i) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
            out[0, j], out[1, j] = self.increments(x, i)
        return out

    def update_batch(self, values: FloatArray, indices: IntArray) -> list[tuple[int, Finding]]:
        """:meth:`update` on each value in turn, re-arming after every finding as the monitor
        does: ``(position, finding)`` pairs, and afterwards the same state bit for bit.

        The CUSUM recursion runs on whole arrays (:func:`cusum_pass`) up to the first event at
        which a side may reach its threshold; there the exact state decides, as
        :meth:`_advance` would, and the pass resumes after it. Where rounding could tip a
        truncation decision the event is taken by :meth:`_advance` itself.
        """
        if self.disabled is not None or values.size == 0:
            return []
        inc = self.increments_batch(values, indices)
        bound = 0.0 if self._lattice else float(np.abs(inc).max())
        found: list[tuple[int, Finding]] = []
        pos, k = 0, values.size
        while pos < k:
            t, stop = self._pass(inc[:, pos:], values[pos:], indices[pos:], bound)
            j = pos + t
            if stop is _Stop.AMBIGUOUS:  # one exact scalar step at the doubtful event
                j += 1
                finding = self._advance(float(inc[0, j]), float(inc[1, j]), float(values[j]),
                                        int(indices[j]))
            elif stop is _Stop.CANDIDATE:
                finding = self._check(int(indices[j]))
            else:
                finding = None
            if finding is not None:
                self.rearm()
                found.append((j, finding))
            pos = j + 1
        return found

    def _pass(self, inc: FloatArray, vals: FloatArray, idx: IntArray,
              bound: float) -> tuple[int, _Stop]:
        """Advance the state exactly through event ``t`` of the chunk and say why it stopped.

        ``bound`` is the largest ``|increment|`` (0 on a lattice, where sums are exact)."""
        k = inc.shape[1]
        s0 = (self._sp, self._sn)
        pre = cusum_pass(inc, s0)
        tol = _TOL * k * (s0[0] + s0[1] + k * bound)
        stop, t_end = _Stop.END, k - 1
        top = pre.max(axis=1)
        if top[0] >= self._hp - tol or top[1] >= self._hn - tol:
            hit = (pre[0] >= self._hp - tol) | (pre[1] >= self._hn - tol)
            t_end, stop = int(hit.argmax()), _Stop.CANDIDATE
        if tol > 0.0 and float(np.abs(pre[:, : t_end + 1]).min()) <= tol:
            col = np.asarray((np.abs(pre[:, : t_end + 1]) <= tol).any(axis=0))
            t_end, stop = int(col.argmax()) - 1, _Stop.AMBIGUOUS
        if t_end >= 0:
            reset = pre[:, : t_end + 1] <= 0.0
            self._sp, self._up = _side_state(reset[0], inc[0], vals, idx, s0[0], self._up)
            self._sn, self._dn = _side_state(reset[1], inc[1], vals, idx, s0[1], self._dn)
        return t_end, stop

    def _crossing(self, side: int, index: int) -> Finding | None:
        seg, stat, h = (self._up, self._sp, self._hp) if side > 0 else (self._dn, self._sn,
                                                                        self._hn)
        mean = seg[1] / seg[2]
        size, passes = self.effect(mean, side)
        if not passes:
            return None
        return Finding(
            statistic=stat, threshold=h, p_value=None, effect_size=size,
            effect_unit=self.effect_unit, direction="increase" if side > 0 else "decrease",
            change_index=int(seg[0]),
            window_summary={"segment_n": int(seg[2]), "segment_mean": mean},
            details={"k": self._kp if side > 0 else self._kn, "side": side},
        )

    def status(self) -> dict[str, Any]:
        up = self._sp / self._hp if math.isfinite(self._hp) else 0.0
        dn = self._sn / self._hn if math.isfinite(self._hn) else 0.0
        if up >= dn:
            self.last_statistic, self.last_threshold = self._sp, self._hp
        else:
            self.last_statistic, self.last_threshold = self._sn, self._hn
        return super().status()

    def rearm(self) -> None:
        self._sp = self._sn = 0.0
        self._up = [-1, 0.0, 0]
        self._dn = [-1, 0.0, 0]

    def runtime_state(self) -> dict[str, Any]:
        d = super().runtime_state()
        d.update({"sp": self._sp, "sn": self._sn, "up": list(self._up), "dn": list(self._dn)})
        return d

    def load_runtime_state(self, state: dict[str, Any]) -> None:
        super().load_runtime_state(state)
        self._sp = float(state["sp"])
        self._sn = float(state["sn"])
        self._up = [int(state["up"][0]), float(state["up"][1]), int(state["up"][2])]
        self._dn = [int(state["dn"][0]), float(state["dn"][1]), int(state["dn"][2])]
