"""Which streams an event feeds: the model-level stream and one stream per segment label.

With no configuration, every label in an event's ``segment`` map (``{"route": "billing",
"tenant": "acme"}``) is a *family* of streams, one per value (``route=billing``), beside a
*model-level* stream (``all``) that sees every event of the model version. A global change is
caught fastest in the model-level stream (it has all the traffic); a change confined to one
segment is diluted there and caught in its segment's stream instead.

Cardinality stays bounded without an allow-list: per model, the first ``max_labels`` label names
seen become families, and per (model, label) the first ``max_values`` distinct values become
streams; later values fold into ``<label>=other``. Events without a family's label feed only the
model-level stream (and their other families). So a model has at most
``1 + max_labels · (max_values + 1)`` streams per version (64 with the defaults).

The false-alarm budget is per model (:class:`~driftscope_llm.services.drift.DriftSettings`
``max_false_alarms_per_100k``), and an event feeds several streams, so it is split:
:meth:`SegmentKeyer.budget_share` gives the model-level stream half of it and each family an
equal part of the other half (``1 / (2 · families)``). Within a family the streams partition the
model's events (one value per event), so their per-event rates average rather than add: a
family's share covers all its values, however many. With every family in use the shares sum to
exactly one budget; with fewer in use the control is conservative.

``label`` (legacy, explicit) restricts splitting to one label; its stream keys are then the bare
values (``billing``, ``other``, ``unlabelled``), with ``allowed`` as the allow-list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydantic import BaseModel, ConfigDict, Field

from driftscope_llm.services.keys import join_key, split_key

__all__ = ["MODEL_STREAM", "OTHER", "SegmentKeyer", "SegmentSettings"]

MODEL_STREAM = "all"
"""Segment key of the model-level stream (every event of a model version)."""
OTHER = "other"
"""Value that stands for every value past the cap (or outside ``allowed``)."""
UNLABELLED = "unlabelled"


class SegmentSettings(BaseModel):
    """How events are split into streams (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(
        default=None,
        description="Split on this one label only, with bare values as stream keys (legacy). "
                    "Default: every label the events carry, as label=value.")
    allowed: list[str] = Field(
        default_factory=list,
        description="With `label`: the values that get a stream (others fold into 'other'); "
                    "empty = the first `max_values` values seen.")
    labels: list[str] | None = Field(
        default=None, description="Labels that become stream families; default: all of them.")
    max_labels: int = Field(
        default=3, ge=1, description="Label families per model (the first seen); the budget's "
                                     "segment half is split over this many.")
    max_values: int = Field(
        default=20, ge=1,
        description="Streams per (model, label): the first values seen; later ones fold into "
                    "'other'.")
    model_stream: bool = Field(
        default=True, description="Run the model-level stream (all traffic) beside segments.")

    def key_for(self, segment: dict[str, str]) -> str:
        """A bounded label for per-event metrics: ``all``, or with ``label`` set, the value as
        a stream key would spell it if it is allow-listed (``other``/``unlabelled`` if not)."""
        if self.label is None:
            return MODEL_STREAM
        value = segment.get(self.label)
        if value is None:
            return UNLABELLED
        return value if value in self.allowed else OTHER

    def families(self) -> int:
        """How many label families the budget is split over."""
        if self.label is not None:
            return 1
        if self.labels is not None:
            return min(len(self.labels), self.max_labels)
        return self.max_labels


class SegmentKeyer:
    """Stream keys of events for one partition, remembering the admitted labels and values.

    The admitted sets are rebuilt from the stream keys already monitored
    (:meth:`restore`), so a checkpoint needs no extra state and a restarted collector folds the
    same values into ``other``. ``on_fold(label)`` is called once per event whose value of
    ``label`` is folded into ``other`` (the collector counts it in
    ``driftscope_streams_folded_total{kind="segment", label=...}``).
    """

    def __init__(self, settings: SegmentSettings, *,
                 on_fold: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.on_fold = on_fold
        self._labels: dict[str, list[str]] = {}  # model -> admitted label names, in order
        self._values: dict[tuple[str, str], set[str]] = {}  # (model, label) -> admitted values

    def restore(self, streams: Iterable[tuple[str, str]]) -> None:
        """Re-admit the labels and values of ``(model, segment key)`` pairs already in use."""
        for model, segment in streams:
            if segment == MODEL_STREAM:
                continue
            if self.settings.label is not None:
                if segment not in (OTHER, UNLABELLED):
                    self._values.setdefault((model, self.settings.label), set()).add(segment)
                continue
            parts = split_key(segment, "=")
            if len(parts) != 2:
                continue
            label, value = parts
            admitted = self._labels.setdefault(model, [])
            if label not in admitted:
                admitted.append(label)
            if value != OTHER:
                self._values.setdefault((model, label), set()).add(value)

    def segments_for(self, model: str, segment: dict[str, str]) -> list[str]:
        """The segment keys of every stream this event feeds, model-level stream first."""
        s = self.settings
        out = [MODEL_STREAM] if s.model_stream else []
        if s.label is not None:
            value = segment.get(s.label)
            out.append(UNLABELLED if value is None else self._admit(model, s.label, value,
                                                                      s.allowed or None))
            return out
        for label in sorted(segment):
            if s.labels is not None and label not in s.labels:
                continue
            admitted = self._labels.setdefault(model, [])
            if label not in admitted:
                if len(admitted) >= s.max_labels:
                    continue
                admitted.append(label)
            value = self._admit(model, label, segment[label], None)
            out.append(join_key(label, value, sep="="))  # "a=b"+"c" never meets "a"+"b=c"
        return out

    def _admit(self, model: str, label: str, value: str, allowed: list[str] | None) -> str:
        if allowed is not None:
            return value if value in allowed else self._fold(label, value)
        seen = self._values.setdefault((model, label), set())
        if value in seen:
            return value
        if len(seen) >= self.settings.max_values or value in (OTHER, UNLABELLED, MODEL_STREAM):
            return self._fold(label, value)
        seen.add(value)
        return value

    def _fold(self, label: str, value: str) -> str:
        """``other``, reporting the fold (a value that already says ``other`` is not folded)."""
        if value != OTHER and self.on_fold is not None:
            self.on_fold(label)
        return OTHER

    def budget_share(self, segment: str) -> float:
        """The share of the model's false-alarm budget a stream of this segment key gets."""
        s = self.settings
        families = s.families()
        if segment == MODEL_STREAM:
            return 0.5 if families else 1.0
        return (0.5 if s.model_stream else 1.0) / max(1, families)
