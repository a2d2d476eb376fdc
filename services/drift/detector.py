"""The detector extension point: the base classes every detector derives from.

A detector is built from a :class:`DetectorContext` (its signal, settings, frozen reference and
false-alarm :class:`~driftscope_llm.services.drift.calibration.Budget`). Its *calibration*
(thresholds and the constants they came from) is computed once by :meth:`Detector.calibrate` and
saved with its state, so a restored detector never recomputes it and behaves identically.

* :class:`WindowDetector` tests the signal's current window against the reference every
  ``test_every`` values. It raises only if the signal's effect size (computed once per round,
  :class:`driftscope_llm.services.drift.effects.WindowView`) reaches the signal's minimum effect
  **and** its test rejects "no drift" at the budgeted level (**and**, for tests with only an
  asymptotic null, a permutation test confirms: :mod:`driftscope_llm.services.drift.permutation`).
  The effect gate comes first, so under no drift a round costs one effect computation, not one
  per test.
* :class:`SequentialDetector` updates on every value (pure Python on the hot path) and raises when
  its statistic crosses a threshold calibrated to the budgeted run length.

Detectors are found by name through :mod:`driftscope_llm.services.drift.registry`, which knows
nothing of these classes (so that the settings, which check detector names, do not depend on the
detectors' machinery); :func:`detector_class` is the typed lookup.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from driftscope_llm.services.drift.calibration import Budget
from driftscope_llm.services.drift.effects import WindowView
from driftscope_llm.services.drift.kinds import SignalKind
from driftscope_llm.services.drift.permutation import level
from driftscope_llm.services.drift.reference import SignalReference
from driftscope_llm.services.drift.registry import registered_class
from driftscope_llm.services.drift.settings import DriftSettings, SignalConfig
from driftscope_llm.services.errors import DetectorError

__all__ = [
    "Detector",
    "DetectorContext",
    "Evaluation",
    "Finding",
    "SequentialDetector",
    "WindowDetector",
    "detector_class",
]


@dataclass(frozen=True, slots=True)
class DetectorContext:
    """Everything a detector is built from. ``seed`` is specific to (stream, signal, detector)."""

    signal: str
    config: SignalConfig
    settings: DriftSettings
    reference: SignalReference
    budget: Budget
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector reports when it raises (the monitor adds exemplars and summaries).

    ``direction`` is ``"increase"``, ``"decrease"`` or ``"shift"``; ``focus`` names what moved
    most when the detector knows (a category, a cluster index), to pick exemplars.
    """

    statistic: float
    threshold: float
    p_value: float | None
    effect_size: float
    effect_unit: str
    direction: str
    change_index: int | None = None
    focus: Any = None
    window_summary: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Detector(ABC):
    """Common surface of every detector (see the module docstring)."""

    name: ClassVar[str] = ""
    kinds: ClassVar[frozenset[SignalKind]] = frozenset()
    sequential: ClassVar[bool] = False

    def __init__(self, ctx: DetectorContext, calibration: dict[str, Any] | None = None) -> None:
        self.ctx = ctx
        if calibration is None:
            try:
                calibration = self.calibrate(ctx)
            except DetectorError as exc:  # e.g. a run length out of reach: off, and say why
                calibration = {"disabled": f"calibration failed: {exc}"}
        self.calibration: dict[str, Any] = calibration
        self.last_statistic = math.nan
        self.last_threshold = math.nan
        self.last_p_value: float | None = None
        self.setup()

    @classmethod
    @abstractmethod
    def calibrate(cls, ctx: DetectorContext) -> dict[str, Any]:
        """Thresholds and constants from the reference and budget (JSON-serialisable)."""

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Derive runtime fields from ``ctx`` and ``calibration`` (cheap; runs on restore)."""

    def rearm(self) -> None:  # noqa: B027 - window tests have nothing to reset
        """Reset after an alarm so that a continuing drift is not re-raised at once."""

    def status(self) -> dict[str, Any]:
        """Latest statistic, threshold and p-value (for metrics)."""
        return {"statistic": self.last_statistic, "threshold": self.last_threshold,
                "p_value": self.last_p_value}

    def runtime_state(self) -> dict[str, Any]:
        """What changes as events arrive (calibration aside); JSON-serialisable."""
        return {}

    def load_runtime_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - stateless default
        """Inverse of :meth:`runtime_state`."""

    def state_dict(self) -> dict[str, Any]:
        return {"calibration": self.calibration, "runtime": self.runtime_state()}

    @classmethod
    def from_state(cls, ctx: DetectorContext, state: dict[str, Any]) -> Detector:
        det = cls(ctx, calibration=state["calibration"])
        det.load_runtime_state(state["runtime"])
        return det


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A window test's outcome: ``rejects`` is "no drift" rejected at the budgeted level."""

    statistic: float
    threshold: float
    p_value: float | None
    rejects: bool
    details: dict[str, Any] = field(default_factory=dict)


class WindowDetector(Detector):
    """A two-sample test of the current window against the reference."""

    @abstractmethod
    def evaluate(self, view: WindowView) -> Evaluation | None:
        """The test on a non-empty window (``None`` when the detector is off)."""

    def confirm(self, view: WindowView, evaluation: Evaluation, index: int) -> float | None:
        """A permutation p-value confirming a rejection, for tests with an asymptotic null."""
        return None

    def refresh(self, view: WindowView) -> None:
        """Recompute the latest statistic for metrics."""
        ev = self.evaluate(view)
        if ev is not None:
            self.last_statistic, self.last_threshold = ev.statistic, ev.threshold
            self.last_p_value = ev.p_value

    def test(self, view: WindowView, index: int) -> Finding | None:
        """Effect gate, test, confirmation (module docstring); a finding when all pass."""
        effect = view.effect
        if not effect.passes:
            return None
        ev = self.evaluate(view)
        if ev is None:
            return None
        self.last_statistic, self.last_threshold, self.last_p_value = (
            ev.statistic, ev.threshold, ev.p_value)
        if not ev.rejects:
            return None
        details = dict(ev.details)
        p_perm = self.confirm(view, ev, index)
        if p_perm is not None:
            details["permutation_p_value"] = p_perm
            if p_perm > level(float(self.calibration["alpha"]), self.ctx.settings.permutations):
                return None
        return Finding(statistic=ev.statistic, threshold=ev.threshold, p_value=ev.p_value,
                       effect_size=effect.size, effect_unit=effect.unit,
                       direction=effect.direction, focus=effect.focus, details=details)


class SequentialDetector(Detector):
    """A detector updated on every value."""

    sequential: ClassVar[bool] = True

    @abstractmethod
    def update(self, value: Any, index: int) -> Finding | None:
        """Take one coerced value (float; booleans as 0.0/1.0) at stream event ``index``."""


def detector_class(name: str) -> type[Detector]:
    """The detector class registered under ``name``; :class:`DetectorError` when there is none."""
    cls = registered_class(name)
    if not (isinstance(cls, type) and issubclass(cls, Detector)):
        raise DetectorError(f"detector {name!r} is registered but is not a Detector subclass")
    return cls
