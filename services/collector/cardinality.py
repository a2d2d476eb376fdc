"""Bounded cardinality: how many models and versions one collector monitors.

``model`` and ``model_version`` come from traffic, so without a bound a producer that puts a
request id in ``model`` creates a stream — monitors, metric series, checkpoint state — per event
(probed on ec31e46: 10,000 distinct models took the collector from 148 MB to ~950 MB RSS, made
``/metrics`` 135 MB and one checkpoint 40 MB). Segments are bounded by
:mod:`~driftscope_llm.services.collector.segments`; this module bounds the other two keys:

* the first ``max_models`` models a collector sees are monitored under their own names; every
  later model is monitored as the one model ``other``;
* per model, the first ``max_versions_per_model`` versions keep their names; later ones are
  monitored as version ``other`` of that model;
* past ``max_model_versions`` (model, version) pairs in all, a new pair is monitored as model
  ``other``, version ``other``.

Folding is by first arrival and sticky: an admitted name stays admitted for the life of the
process, and names already in a restored checkpoint are admitted first
(:meth:`StreamCaps.restore`), so a restart does not reshuffle which model is ``other``. Each
folded event is counted (``driftscope_streams_folded_total{kind="model"|"version"}``), so
an operator sees the cap at work and can raise it. A collector holds at most
``max_model_versions`` plus a few ``other`` model versions (at most ``max_models + 2`` of them:
one per model, and ``other/other``), each with the segment streams of
:mod:`~driftscope_llm.services.collector.segments` (at most 64 with its defaults).

What a fold costs: the ``other`` stream mixes unrelated traffic, so drift inside it is detected
late or not at all. Raise the caps for fleets with many legitimately distinct models; never
remove them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OTHER", "CardinalitySettings", "StreamCaps"]

OTHER = "other"
"""The name a model or version past its cap is monitored under."""


class CardinalitySettings(BaseModel):
    """Caps on the stream keys that come from traffic (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    max_models: int = Field(
        default=50, ge=1,
        description="Models monitored under their own name (the first seen); later models "
                    "fold into the model 'other'.")
    max_versions_per_model: int = Field(
        default=5, ge=1,
        description="Versions per model monitored under their own name (the first seen); "
                    "later versions fold into the version 'other'.")
    max_model_versions: int = Field(
        default=100, ge=1,
        description="(model, version) pairs monitored under their own names in all; later "
                    "pairs fold into model 'other', version 'other'.")


class StreamCaps:
    """Maps an event's ``(model, version)`` to the names it is monitored under.

    Thread-safe (the Kafka client's rebalance thread restores while the loop folds).
    ``on_fold(dimension)`` is called once per folded event, ``dimension`` ``"model"`` or
    ``"version"`` (the collector counts it in a metric).
    """

    def __init__(self, settings: CardinalitySettings | None = None, *,
                 on_fold: Callable[[str], None] | None = None) -> None:
        self.settings = settings or CardinalitySettings()
        self.on_fold = on_fold
        self._versions: dict[str, set[str]] = {}
        self._pairs = 0  # (model, version) pairs admitted, 'other' ones included
        self._lock = threading.Lock()

    def restore(self, keys: Iterable[tuple[str, str]]) -> None:
        """Admit ``(model, version)`` pairs already monitored (from a checkpoint), caps
        permitting, so a restart keeps the same names."""
        with self._lock:
            for model, version in keys:
                self._admit(model, version)

    def fold(self, model: str, version: str, *, count: bool = True) -> tuple[str, str]:
        """The ``(model, version)`` an event is monitored under. ``count=False`` for a second
        look at the same event (its metrics labels), so each folded event is reported once."""
        versions = self._versions.get(model)
        if versions is not None and version in versions:  # the common case, lock-free read
            return model, version
        with self._lock:
            folded = self._admit(model, version)
        if count and self.on_fold is not None and folded != (model, version):
            self.on_fold("model" if folded[0] != model else "version")
        return folded

    def _admit(self, model: str, version: str) -> tuple[str, str]:
        s = self.settings
        versions = self._versions.get(model)
        if versions is None:
            if model != OTHER and self.models >= s.max_models:
                model = OTHER
            versions = self._versions.setdefault(model, set())
        if version not in versions:
            if version != OTHER and len(versions - {OTHER}) >= s.max_versions_per_model:
                version = OTHER
            elif self._pairs >= s.max_model_versions:
                model, version = OTHER, OTHER
                versions = self._versions.setdefault(OTHER, set())
            if version not in versions:
                versions.add(version)
                self._pairs += 1
        return model, version

    @property
    def models(self) -> int:
        """Models admitted under their own name (``other`` not counted)."""
        return len(self._versions) - (OTHER in self._versions)
