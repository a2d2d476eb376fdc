"""The detector extension point: two small ABCs and a name registry.

Adding a detector is adding one module under ``services/drift/detectors/`` with a class decorated
by :func:`register_detector`; every module there is imported when the registry is first used.

A detector is built from a :class:`DetectorContext` (its signal, settings, frozen reference and
false-alarm :class:`~services.drift.calibration.Budget`). Its *calibration* (thresholds and the
constants they came from) is computed once by :meth:`Detector.calibrate` and saved with its
state, so a restored detector never recomputes it and behaves identically.

* :class:`WindowDetector` tests the signal's current window against the reference every
  ``test_every`` values. It raises only if the signal's effect size (computed once per round,
  :class:`services.drift.effects.WindowView`) reaches the signal's minimum effect **and** its
  test rejects "no drift" at the budgeted level (**and**, for tests with only an asymptotic
  null, a permutation test confirms: :mod:`services.drift.permutation`). The effect gate comes
  first, so under no drift a round costs one effect computation, not one per test.
* :class:`SequentialDetector` updates on every value (pure Python on the hot path) and raises when
  its statistic crosses a threshold calibrated to the budgeted run length.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from driftscope_llm.services.drift.calibration import Budget
from driftscope_llm.services.drift.effects import WindowView
from driftscope_llm.services.drift.permutation import level
from driftscope_llm.services.drift.reference import SignalReference
from driftscope_llm.services.drift.settings import DriftSettings, SignalConfig, SignalKind
from driftscope_llm.services.errors import DetectorError

__all__ = [
    "Detector",
    "DetectorContext",
    "Evaluation",
    "Finding",
    "SequentialDetector",
    "WindowDetector",
    "available_detectors",
    "detector_class",
    "register_detector",
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


_REGISTRY: dict[str, type[Detector]] = {}
_LOADED = False

D = TypeVar("D", bound=type[Detector])


def register_detector(name: str, *kinds: SignalKind) -> Callable[[D], D]:
    """Class decorator: register a detector under ``name`` for signals of ``kinds`` (or, when
    none are given, of the class attribute ``kinds``)."""

    def wrap(cls: D) -> D:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise DetectorError(f"detector {name!r} is already registered")
        cls.name = name
        if kinds:
            cls.kinds = frozenset(kinds)
        if not cls.kinds:
            raise DetectorError(f"detector {name!r} names no signal kind")
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import driftscope_llm.services.drift.detectors as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")


def available_detectors() -> dict[str, frozenset[SignalKind]]:
    """Registered detector names and the signal kinds each runs on."""
    _load()
    return {n: c.kinds for n, c in sorted(_REGISTRY.items())}


def detector_class(name: str) -> type[Detector]:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError as exc:
        raise DetectorError(f"unknown detector {name!r}") from exc
