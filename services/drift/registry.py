"""The detector name registry: which detector class answers to which name, on which signal kinds.

Adding a detector is adding one module under ``services/drift/detectors/`` with a class (derived
from :class:`~driftscope_llm.services.drift.detector.Detector`) decorated by
:func:`register_detector`; every module there is imported when the registry is first asked.

This module knows names and signal kinds only, never the detector base classes: the drift settings
check detector names against it, and the base classes need the settings, so keeping the two apart
is what keeps the package free of import circles. The typed lookup (a name to a ``Detector``
subclass) is :func:`driftscope_llm.services.drift.detector.detector_class`. The detectors package
is imported by name (plugin discovery), not by a static import, for the same reason.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from driftscope_llm.services.drift.kinds import SignalKind
from driftscope_llm.services.errors import DetectorError

__all__ = [
    "DETECTORS_PACKAGE",
    "available_detectors",
    "register_detector",
    "registered_class",
]

DETECTORS_PACKAGE = "driftscope_llm.services.drift.detectors"
"""The package whose every module is imported (and so registers itself) on first use."""

_REGISTRY: dict[str, type[Any]] = {}
_LOADED = False

D = TypeVar("D", bound=type[Any])


def register_detector(name: str, *kinds: SignalKind) -> Callable[[D], D]:
    """Class decorator: register a detector under ``name`` for signals of ``kinds`` (or, when
    none are given, of the class attribute ``kinds``)."""

    def wrap(cls: D) -> D:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise DetectorError(f"detector {name!r} is already registered")
        cls.name = name
        if kinds:
            cls.kinds = frozenset(kinds)
        if not getattr(cls, "kinds", None):
            raise DetectorError(f"detector {name!r} names no signal kind")
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    pkg = importlib.import_module(DETECTORS_PACKAGE)
    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{DETECTORS_PACKAGE}.{mod.name}")


def available_detectors() -> dict[str, frozenset[SignalKind]]:
    """Registered detector names and the signal kinds each runs on."""
    _load()
    return {n: frozenset(c.kinds) for n, c in sorted(_REGISTRY.items())}


def registered_class(name: str) -> type[Any]:
    """The class registered under ``name`` (untyped; prefer ``detector.detector_class``)."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError as exc:
        raise DetectorError(f"unknown detector {name!r}") from exc
