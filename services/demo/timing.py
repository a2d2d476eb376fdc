"""Wall and CPU time of each step of the demo, printed at its end and kept in ``summary.json``.

CPU time is this process's and its finished children's user + system time
(``resource.getrusage``): on a machine shared with other work the wall time grows with the load,
the CPU time does not, so both are shown (README, demo section). With two busy threads CPU time
can reach twice the wall time.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["StepClock", "StepTime"]


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass(frozen=True)
class StepTime:
    name: str
    wall_s: float
    cpu_s: float


class StepClock:
    """Times named steps, one at a time (:meth:`step`, or :meth:`start` … :meth:`stop`)."""

    def __init__(self) -> None:
        self.steps: list[StepTime] = []
        self._open: tuple[str, float, float] | None = None

    def start(self, name: str) -> None:
        """Start timing ``name`` (ending the step still open, if any)."""
        self.stop()
        self._open = (name, time.perf_counter(), _cpu_s())

    def stop(self) -> None:
        """End the open step (nothing when none is open)."""
        if self._open is None:
            return
        name, wall0, cpu0 = self._open
        self._open = None
        self.steps.append(StepTime(name, time.perf_counter() - wall0, _cpu_s() - cpu0))

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.start(name)
        try:
            yield
        finally:
            self.stop()

    @property
    def total(self) -> StepTime:
        return StepTime("total", sum(s.wall_s for s in self.steps),
                        sum(s.cpu_s for s in self.steps))

    def to_json(self) -> list[dict[str, float | str]]:
        return [{"step": s.name, "wall_s": round(s.wall_s, 1), "cpu_s": round(s.cpu_s, 1)}
                for s in [*self.steps, self.total]]
