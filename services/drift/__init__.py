"""Calibrated drift detection for LLM output signals: pure, no I/O.

One :class:`StreamMonitor` per stream (model, model version, segment) takes
:class:`Observation` s and returns :class:`Anomaly` s. Detectors are registered by name
(:func:`register_detector`); :class:`DriftSettings` says which run on which signal, with what
minimum effect, under which false-alarm budget. See ``docs/drift.md``.
"""

from __future__ import annotations

from driftscope_llm.services.drift.calibration import Budget, split_budget
from driftscope_llm.services.drift.detector import (
    Detector,
    DetectorContext,
    Finding,
    SequentialDetector,
    WindowDetector,
)
from driftscope_llm.services.drift.monitor import StreamMonitor
from driftscope_llm.services.drift.monitor_summary import MonitorSummary, SignalSummary
from driftscope_llm.services.drift.records import (
    Anomaly,
    Observation,
    ObservationBatch,
    SignalValue,
    StreamKey,
)
from driftscope_llm.services.drift.reference import ReferenceSnapshot
from driftscope_llm.services.drift.registry import available_detectors, register_detector
from driftscope_llm.services.drift.settings import (
    DEFAULT_SIGNALS,
    DriftSettings,
    EffectUnit,
    SignalConfig,
    SignalKind,
)

__all__ = [
    "DEFAULT_SIGNALS",
    "Anomaly",
    "Budget",
    "Detector",
    "DetectorContext",
    "DriftSettings",
    "EffectUnit",
    "Finding",
    "MonitorSummary",
    "Observation",
    "ObservationBatch",
    "ReferenceSnapshot",
    "SequentialDetector",
    "SignalConfig",
    "SignalKind",
    "SignalSummary",
    "SignalValue",
    "StreamKey",
    "StreamMonitor",
    "WindowDetector",
    "available_detectors",
    "register_detector",
    "split_budget",
]
