"""Time the collector can trust: what it observed orders events, a client's ``ts`` does not.

An event's ``ts`` is a claim made by whoever produced it: a gateway with a bad default, a host
whose clock is off, or anyone who can produce one event. Before issue 28 a model version's
first-seen time was its first event's ``ts``, and a new version is compared with the newest
version first seen *before* it, so one event saying year 1 (or an old version's first event
saying year 9999) blinded the rollout comparison. Now:

* **Ordering** (which version came first, when a reference was stored) uses the *observed*
  time: the broker's timestamp of the Kafka record (non-decreasing per partition, never later
  than the collector's own clock), or in ``driftscope replay`` the moment each line was read.
* **Plausibility**: a ``ts`` more than :attr:`ClockSettings.max_behind_s` before its
  reference time, or more than :attr:`ClockSettings.max_ahead_s` after it, is *skewed*. The
  event is kept (its ``ts`` is what it says, for display) but flagged, counted
  (``driftscope_events_clock_skew_total{direction}``) and its detectors, anomalies and
  incidents are timed by the reference time instead, so it cannot open an incident dated year 1
  (invisible to ``incidents list --since``) or stretch a grouping window to year 9999.

The reference time is the broker time in the collector. A replayed file has no broker: a
``ts`` is *ahead* when it is later than the wall clock at reading (plus the margin) and
*behind* when it is earlier than the file's own clock — the latest plausible ``ts`` read so far —
minus the margin, so a file of last month's traffic replays unflagged while one event dated
year 1 in the middle of it is caught (:class:`EventClock`).

Set the Kafka topic's ``message.timestamp.type`` to ``LogAppendTime`` so the broker time is the
broker's own clock; with the default ``CreateTime`` it is the producing client's clock (the
Kafka client's, not the event payload's), still bounded above by the collector's clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SKEW_DIRECTIONS", "ArrivalClock", "ClockSettings", "EventClock", "Skew", "Timing"]

Skew = Literal["behind", "ahead"]
"""Which side of its reference time a skewed ``ts`` lies on."""

SKEW_DIRECTIONS: tuple[Skew, ...] = ("behind", "ahead")


class ClockSettings(BaseModel):
    """How far an event's ``ts`` may lie from its reference time (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    max_behind_s: float = Field(
        default=86_400.0, gt=0,
        description="An event whose ts is more than this many seconds before its broker (or "
                    "replay) time is flagged as clock-skewed and timed by the broker instead.")
    max_ahead_s: float = Field(
        default=300.0, ge=0,
        description="An event whose ts is more than this many seconds after its broker (or "
                    "arrival) time is flagged as clock-skewed and timed by the broker instead.")


@dataclass(frozen=True, slots=True)
class Timing:
    """When an event happened, as far as the collector can tell.

    ``observed`` orders versions and references; ``ts`` times detectors, anomalies and
    incidents (the event's own ``ts`` unless ``skew``); ``skew`` says why it was not trusted.
    """

    observed: float
    ts: float
    skew: Skew | None = None


class EventClock:
    """Judges events' ``ts`` claims against their reference time, for one partition or file.

    ``follow_claims=False`` (the collector): the reference is the observed broker time, both
    ways. ``follow_claims=True`` (replay): *ahead* is judged against the observed arrival time,
    *behind* against the latest plausible claim so far (the file's clock), which starts at the
    first claim that is not ahead.

    >>> clock = EventClock(ClockSettings(max_behind_s=60, max_ahead_s=5), follow_claims=True)
    >>> clock.judge(1_000.0, observed=2_000.0).skew is None      # sets the file's clock to 1000
    True
    >>> clock.judge(-62_135_596_800.0, observed=2_001.0)          # year 1
    Timing(observed=2001.0, ts=1000.0, skew='behind')
    >>> clock.judge(253_402_300_799.0, observed=2_002.0).skew     # year 9999
    'ahead'
    """

    __slots__ = ("file_clock", "follow_claims", "settings")

    def __init__(self, settings: ClockSettings | None = None, *,
                 follow_claims: bool = False) -> None:
        self.settings = settings if settings is not None else ClockSettings()
        self.follow_claims = follow_claims
        self.file_clock: float | None = None

    def judge(self, claim: float, *, observed: float) -> Timing:
        """The :class:`Timing` of an event claiming ``claim`` and observed at ``observed``."""
        s = self.settings
        if claim > observed + s.max_ahead_s:
            return Timing(observed, self._fallback(observed), "ahead")
        floor = self.file_clock if self.follow_claims else observed
        if floor is not None and claim < floor - s.max_behind_s:
            return Timing(observed, self._fallback(observed), "behind")
        if self.follow_claims and (self.file_clock is None or claim > self.file_clock):
            self.file_clock = claim
        return Timing(observed, claim)

    def _fallback(self, observed: float) -> float:
        """The time a skewed event is given: the file's clock in replay, else the broker's."""
        if self.follow_claims and self.file_clock is not None:
            return self.file_clock
        return observed


class ArrivalClock:
    """Strictly increasing arrival times (the wall clock, nudged forward on ties), so the order
    lines were read in is the order of their observed times (replay)."""

    def __init__(self, clock: Callable[[], float] = time.time, *, step: float = 1e-5) -> None:
        self.clock = clock
        self.step = step
        self.last = -float("inf")

    def __call__(self) -> float:
        self.last = max(self.clock(), self.last + self.step)
        return self.last
