"""The consumer loop the collector and the worker share: poll, hand over, detect idleness.

A component supplies a :class:`LoopHandler`; :class:`ConsumerLoop` owns the rest:

* polling, with a failed poll (broker away) logged and retried after a short pause, since the
  client reconnects by itself;
* **idleness**, defined once: the member owns at least one partition and its position has reached
  the end of every partition it owns ("caught up"). Joining the group, owning nothing, or lagging
  behind is never idle. ``run(max_idle_s=...)`` returns after being caught up for that long
  (batch runs and tests); with ``None`` it runs until :meth:`ConsumerLoop.stop`;
* the consumer lag per owned partition (log end − position), measured every ``lag_every_s`` and
  handed to :meth:`LoopHandler.on_lag` for metrics.

The loop never commits: committing is the handler's business, after what it has done with a
message is safe (checkpoint-before-commit for the collector, report-before-commit for the worker).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from driftscope_llm.services.bus.base import Bus, Message, Partition, RebalanceHook
from driftscope_llm.services.errors import BusError

__all__ = ["ConsumerLoop", "LoopHandler"]

log = logging.getLogger("driftscope.bus")


class LoopHandler(Protocol):
    """What a component does with the loop's events."""

    def handle(self, batch: dict[Partition, list[Message]]) -> bool:
        """Process one polled batch; ``False`` stops the loop at once (interrupted)."""

    def on_idle(self) -> None:
        """A poll returned nothing (flush what is due, refresh gauges)."""

    def on_lag(self, lag: dict[Partition, int]) -> None:
        """The lag of each owned partition, every ``lag_every_s`` seconds."""


class ConsumerLoop:
    """Polls ``bus`` on ``topics`` and drives a :class:`LoopHandler` (module docstring)."""

    def __init__(self, bus: Bus, topics: Sequence[str], handler: LoopHandler, *,
                 on_assign: RebalanceHook | None = None, on_revoke: RebalanceHook | None = None,
                 clock: Callable[[], float] = time.monotonic, poll_timeout_s: float = 0.5,
                 lag_every_s: float = 5.0) -> None:
        self.bus = bus
        self.topics = list(topics)
        self.handler = handler
        self.on_assign, self.on_revoke = on_assign, on_revoke
        self.clock = clock
        self.poll_timeout_s = poll_timeout_s
        self.lag_every_s = lag_every_s
        self.stopping = threading.Event()
        self._last_lag = -float("inf")

    def stop(self) -> None:
        """Ask the loop to return after the batch in hand (thread- and signal-safe)."""
        self.stopping.set()

    def run(self, *, max_idle_s: float | None = None) -> bool:
        """Loop until stopped or idle for ``max_idle_s``: ``True``; interrupted by the handler:
        ``False``. The caller closes the bus."""
        self.bus.subscribe(self.topics, on_assign=self.on_assign, on_revoke=self.on_revoke)
        idle_since = self.clock()
        while not self.stopping.is_set():
            try:
                batch = self.bus.poll(self.poll_timeout_s)
            except BusError as exc:
                log.warning("%s; retrying", exc)
                self.stopping.wait(self.poll_timeout_s)
                continue
            if batch:
                if not self.handler.handle(batch):
                    return False
                idle_since = self.clock()
            else:
                self.handler.on_idle()
                if max_idle_s is not None:
                    if not self._caught_up(force=True):
                        idle_since = self.clock()
                    elif self.clock() - idle_since > max_idle_s:
                        break
            self._caught_up(force=False)
        return True

    def _caught_up(self, *, force: bool) -> bool:
        """Measure the lag (always when ``force``, else every ``lag_every_s``); report it to the
        handler when measured; True when partitions are owned and none has any lag."""
        now = self.clock()
        if not force and now - self._last_lag < self.lag_every_s:
            return False
        try:
            positions = self.bus.positions()
            ends = self.bus.end_offsets(positions) if positions else {}
        except BusError as exc:  # broker away: not caught up, as far as anyone can tell
            log.debug("lag unknown: %s", exc)
            return False
        lag = {tp: max(0, ends.get(tp, pos) - pos) for tp, pos in positions.items()}
        if now - self._last_lag >= self.lag_every_s:
            self._last_lag = now
            self.handler.on_lag(lag)
        return bool(positions) and not any(lag.values())
