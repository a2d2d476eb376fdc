"""Facets of an incident: one per (segment, signal, detector) that saw the change.

One change — a rollout, a bad fine-tune, a new kind of traffic — moves several signals in
several streams, and each (signal, detector) pair of each stream raises its own anomaly. The
collector folds every anomaly on the same model version within the grouping window into one
incident (:func:`group_key`); each distinct (segment, signal, detector) becomes a
:class:`Facet`, and repeated alarms of a facet update it.

What the incident shows first
-----------------------------
* **Headline**: the facet whose effect is largest *relative to its signal's minimum effect*
  (``effect_size / min_effect``): effects are in different units (rate points, standard
  deviations, shares of outputs), and the minimum effect is what the operator said matters, so
  the ratio compares them. Ties: the earlier facet.
* **Severity** from that ratio: ``critical`` at 4× the minimum effect or more, ``warning`` at 2×,
  ``info`` below.
* **Exemplars** (what attribution runs on) favour behavioural facets over operational ones, in
  :data:`SIGNAL_ORDER`: refusals, then embeddings (topic), then confidence and logprob signals,
  then finish reasons, then lengths, then latency; within a class, larger relative effect first.
  A latency spike's slowest outputs say little about what the model learnt; a refusal's outputs
  are the behaviour to trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from driftscope_llm.services.keys import join_key
from driftscope_llm.services.vocabulary import Signal

__all__ = ["SIGNAL_ORDER", "Facet", "FacetRow", "facet_rows", "group_key", "headline",
           "merge_facets", "ordered_exemplar_ids", "severity_of"]

SIGNAL_ORDER: tuple[Signal, ...] = (
    Signal.REFUSAL, Signal.EMBEDDING, Signal.CONFIDENCE, Signal.LOGPROB_MEAN, Signal.LOGPROB_MIN,
    Signal.LOW_LOGPROB_SHARE, Signal.ENTROPY_MEAN, Signal.FINISH_REASON, Signal.LENGTH_TOKENS,
    Signal.LENGTH_CHARS, Signal.LATENCY_MS,
)
"""Exemplar preference: behavioural signals first, operational last (unknown signals between
finish reasons and lengths)."""

CRITICAL_RATIO = 4.0
WARNING_RATIO = 2.0
MAX_FACET_EXEMPLARS = 10


class Facet(BaseModel):
    """One (segment, signal, detector) of an incident, with its latest statistic and its
    largest effect so far."""

    segment: str
    signal: str
    detector: str
    effect_size: float
    effect_unit: str = ""
    min_effect: float = Field(gt=0)
    direction: str = ""
    statistic: float
    threshold: float
    p_value: float | None = None
    first_event_id: str
    first_at: datetime
    last_at: datetime
    alarms: int = 1
    exemplars: list[str] = Field(
        default_factory=list, description="Event ids; their texts are the incident's exemplars.")

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.segment, self.signal, self.detector)

    @property
    def relative_effect(self) -> float:
        """Effect in multiples of the signal's minimum effect (what ranks facets)."""
        return abs(self.effect_size) / self.min_effect

    def absorb(self, new: Facet) -> None:
        """A repeated alarm of this facet: latest statistic, largest effect, more exemplars."""
        self.alarms += new.alarms
        self.last_at = max(self.last_at, new.last_at)
        self.statistic, self.threshold, self.p_value = new.statistic, new.threshold, new.p_value
        if new.relative_effect > self.relative_effect:
            self.effect_size, self.direction = new.effect_size, new.direction
        seen = set(self.exemplars)
        self.exemplars.extend(e for e in new.exemplars if e not in seen)
        del self.exemplars[MAX_FACET_EXEMPLARS:]


def group_key(model: str, model_version: str) -> str:
    """The grouping key of incidents: one live incident per model version (every segment,
    signal and detector is a facet of it)."""
    return join_key(model, model_version, sep="|")


def merge_facets(facets: list[Facet], new: list[Facet]) -> list[Facet]:
    """``facets`` with ``new`` folded in (same key: absorbed; otherwise appended), in place."""
    index = {f.key: f for f in facets}
    for f in new:
        mine = index.get(f.key)
        if mine is None:
            facets.append(f.model_copy(deep=True))
            index[f.key] = facets[-1]
        else:
            mine.absorb(f)
    return facets


def headline(facets: list[Facet]) -> Facet | None:
    """The facet with the largest effect relative to its minimum effect (earliest on ties)."""
    best: Facet | None = None
    for f in facets:
        if best is None or f.relative_effect > best.relative_effect:
            best = f
    return best


def severity_of(facets: list[Facet]) -> str:
    """``critical`` / ``warning`` / ``info`` from the headline's relative effect."""
    top = headline(facets)
    ratio = 0.0 if top is None else top.relative_effect
    if ratio >= CRITICAL_RATIO:
        return "critical"
    if ratio >= WARNING_RATIO:
        return "warning"
    return "info"


def _rank(f: Facet) -> tuple[int, float]:
    try:
        pos = SIGNAL_ORDER.index(f.signal)
    except ValueError:
        pos = SIGNAL_ORDER.index(Signal.LENGTH_TOKENS) - 1  # between behaviour and operations
    return (pos, -f.relative_effect)


def ordered_exemplar_ids(facets: list[Facet]) -> list[str]:
    """Every facet's exemplar ids, behavioural facets first (module docstring), no repeats."""
    out: list[str] = []
    seen: set[str] = set()
    for f in sorted(facets, key=_rank):
        for e in f.exemplars:
            if e not in seen:
                seen.add(e)
                out.append(e)
    return out


@dataclass(frozen=True, slots=True)
class FacetRow:
    """One line of a facet table (the CLI's ``incidents show``, the HTML report): a facet's
    figures, its effect in multiples of its signal's minimum effect, and whether it is the
    incident's headline. A snapshot: later alarms of the facet do not change it."""

    segment: str
    signal: str
    detector: str
    effect_size: float
    effect_unit: str
    min_effect: float
    relative_effect: float
    direction: str
    first_event_id: str
    first_at: datetime
    alarms: int
    exemplars: tuple[str, ...]
    headline: bool

    @property
    def first_at_text(self) -> str:
        """``first_at`` to the second, without its zone (``2025-01-06T10:00:00``)."""
        return self.first_at.isoformat()[:19]


def facet_rows(facets: list[Facet]) -> list[FacetRow]:
    """The rows of a facet table, headline first then by relative effect.

    >>> from datetime import UTC, datetime
    >>> at = datetime(2025, 1, 6, 10, tzinfo=UTC)
    >>> def facet(signal: str, effect: float) -> Facet:
    ...     return Facet(segment="billing", signal=signal, detector="ks", effect_size=effect,
    ...                  min_effect=0.1, statistic=1.0, threshold=0.5, first_event_id="e1",
    ...                  first_at=at, last_at=at)
    >>> [(r.signal, r.relative_effect, r.headline)
    ...  for r in facet_rows([facet("latency_ms", 0.2), facet("refusal", 0.5)])]
    [('refusal', 5.0, True), ('latency_ms', 2.0, False)]
    """
    top = headline(facets)
    rows = sorted(facets, key=lambda f: (f is not top, -f.relative_effect))
    return [FacetRow(segment=f.segment, signal=f.signal, detector=f.detector,
                     effect_size=f.effect_size, effect_unit=f.effect_unit,
                     min_effect=f.min_effect, relative_effect=f.relative_effect,
                     direction=f.direction, first_event_id=f.first_event_id,
                     first_at=f.first_at, alarms=f.alarms, exemplars=tuple(f.exemplars),
                     headline=f is top) for f in rows]
