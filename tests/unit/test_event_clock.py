"""The event clock's rules (collector/clock.py): when a ``ts`` is skewed, and what time a
skewed event gets instead. The rollouts it protects: tests/unit/test_clock_skew.py."""

from __future__ import annotations

import itertools

import pytest

from driftscope_llm.services.collector.clock import ArrivalClock, ClockSettings, EventClock


def test_a_skewed_event_is_timed_by_its_broker_time() -> None:
    clock = EventClock(ClockSettings(max_behind_s=86_400, max_ahead_s=300))
    now = 1_800_000_000.0
    assert clock.judge(now - 86_400, observed=now).skew is None  # exactly at the bound: kept
    assert clock.judge(now + 300, observed=now).skew is None
    behind = clock.judge(now - 86_401, observed=now)
    ahead = clock.judge(now + 301, observed=now)
    assert (behind.skew, behind.ts, behind.observed) == ("behind", now, now)
    assert (ahead.skew, ahead.ts, ahead.observed) == ("ahead", now, now)


def test_replay_judges_behind_by_the_files_own_clock() -> None:
    """A file of last month's traffic is not skewed; one event a day before it is."""
    clock = EventClock(ClockSettings(max_behind_s=86_400, max_ahead_s=300), follow_claims=True)
    now, month_ago = 1_800_000_000.0, 1_800_000_000.0 - 30 * 86_400
    assert [clock.judge(month_ago + i, observed=now + i).skew for i in range(3)] == [None] * 3
    lie = clock.judge(month_ago - 86_401, observed=now + 3)
    assert (lie.skew, lie.ts) == ("behind", month_ago + 2)  # timed by the file's clock
    assert clock.judge(now + 1_000, observed=now + 4).skew == "ahead"  # after the wall clock


def test_arrival_times_strictly_increase_when_the_clock_stands_still() -> None:
    arrival = ArrivalClock(lambda: 1_800_000_000.0)
    times = [arrival() for _ in range(1000)]
    assert all(b > a for a, b in itertools.pairwise(times))


def test_settings_refuse_a_window_that_flags_everything() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        ClockSettings(max_behind_s=0)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        ClockSettings(max_ahead_s=-1)
