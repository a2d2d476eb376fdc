"""Two-sided CUSUM machinery shared by the sequential detectors.

Page's CUSUM (Page 1954) on a per-event score ``z``: ``S⁺ = max(0, S⁺ + z - k⁺)`` watches for an
increase, ``S⁻ = max(0, S⁻ - z - k⁻)`` for a decrease; a side raises when it reaches its threshold
``h``. Subclasses choose the score (reference normal scores, standardised raw values, a
log-likelihood ratio) and place ``k`` at the signal's minimum effect, so that under any change
smaller than the minimum effect the statistic drifts *down*. Each ``h`` is calibrated with
:func:`driftscope_llm.services.drift.calibration.calibrate_cusum` to twice the pair's budgeted ARL
(two sides share the budget).

The event at which a side last left zero estimates the change point; the mean of the raw values
since then estimates the changed level, and an alarm also needs that estimate to differ from the
reference by at least the minimum effect, in the direction of the side.

:meth:`TwoSidedCusum.update` takes one value; :meth:`TwoSidedCusum.update_batch` and
:func:`update_all` take arrays (the recursion in cumulative-sum form, with the same state bit for
bit: :mod:`driftscope_llm.services.drift.cusum_batch`). A subclass gives :meth:`score` (or
:meth:`increments`) for the first and, to be fast on arrays, :meth:`scores_batch` (or
:meth:`increments_batch`) for the second; without them arrays go value by value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift.calibration import NullMixture, calibrate_mixture
from driftscope_llm.services.drift.cusum_batch import BatchCusum, advance_batch, advance_together
from driftscope_llm.services.drift.detector import DetectorContext, Finding, SequentialDetector

__all__ = ["TwoSidedCusum", "calibrate_sides", "update_all"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

def update_all(jobs: list[tuple[SequentialDetector, Any, IntArray]],
               ) -> list[list[tuple[int, Finding]]]:
    """``det.update`` on each of its values, re-arming after each finding, for every job
    (values: a float array, or a list of categories): :class:`TwoSidedCusum` detectors on float
    arrays of the same length share one array pass
    (:func:`~driftscope_llm.services.drift.cusum_batch.advance_together`); any other is called
    once per value. Returns each job's ``(position, finding)`` pairs."""
    out: list[list[tuple[int, Finding]]] = [[] for _ in jobs]
    groups: dict[int, list[int]] = {}
    for n, (det, values, indices) in enumerate(jobs):
        arrays = isinstance(values, np.ndarray)
        if arrays and isinstance(det, TwoSidedCusum):
            if det.disabled is None and values.size:
                groups.setdefault(values.size, []).append(n)
            continue
        seq = values.tolist() if arrays else values
        for j, (x, i) in enumerate(zip(seq, indices.tolist(), strict=True)):
            finding = det.update(x, i)
            if finding is not None:
                det.rearm()
                out[n].append((j, finding))
    for members in groups.values():
        batch: list[tuple[BatchCusum, FloatArray, IntArray]] = []
        for n in members:
            det, values, indices = jobs[n]
            assert isinstance(det, TwoSidedCusum)
            batch.append((det, values, indices))
        for n, found in zip(members, advance_together(batch), strict=True):
            out[n] = found
    return out


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
        self.lattice = False  # True when every increment is an integer: arrays add exactly
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

    def scores_batch(self, values: FloatArray, indices: IntArray) -> FloatArray | None:
        """The scores ``z`` of many values, for subclasses whose increments are the default
        ``(z - k⁺, -z - k⁻)``, bit for bit as the scalar score; ``None`` when not vectorised."""
        return None

    def k_values(self) -> tuple[float, float]:
        """``(k⁺, k⁻)`` of the default increments (see :meth:`scores_batch`)."""
        return self._kp, self._kn

    def increments_batch(self, values: FloatArray, indices: IntArray) -> FloatArray:
        """:meth:`increments` of many values: a ``(2, k)`` array (rows ``S⁺``, ``S⁻``).

        From :meth:`scores_batch` when a subclass gives it; else :meth:`increments` per value.
        Subclasses with other vectorised increments override this, bit for bit.
        """
        z = self.scores_batch(values, indices)
        if z is not None:
            inc = np.empty((2, values.size))
            np.subtract(z, self._kp, out=inc[0])
            np.subtract(-z, self._kn, out=inc[1])
            return inc
        out = np.empty((2, values.size))
        for j, (x, i) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
            out[0, j], out[1, j] = self.increments(x, i)
        return out

    def update_batch(self, values: FloatArray, indices: IntArray) -> list[tuple[int, Finding]]:
        """:meth:`update` on each value in turn, re-arming after every finding as the monitor
        does: ``(position, finding)`` pairs, and afterwards the same state bit for bit (the
        array pass of :mod:`driftscope_llm.services.drift.cusum_batch`)."""
        if self.disabled is not None or values.size == 0:
            return []
        return advance_batch(self, values, indices)

    # the state the array pass reads and writes (BatchCusum)

    def cusum_state(self) -> tuple[float, float, list[Any], list[Any]]:
        return self._sp, self._sn, self._up, self._dn

    def set_cusum_state(self, sp: float, sn: float, up: list[Any], dn: list[Any]) -> None:
        self._sp, self._sn, self._up, self._dn = sp, sn, up, dn

    def thresholds(self) -> tuple[float, float]:
        return self._hp, self._hn

    def advance(self, inc_up: float, inc_dn: float, value: float, index: int) -> Finding | None:
        return self._advance(inc_up, inc_dn, value, index)

    def check(self, index: int) -> Finding | None:
        return self._check(index)

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
