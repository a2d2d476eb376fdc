"""A store wrapper that rides out a backing service restart instead of crashing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from driftscope_llm.services.errors import StoreError

__all__ = ["RetryingStore"]

log = logging.getLogger("driftscope.store")


class RetryingStore:
    """Delegate every call to ``inner``, retrying on :class:`StoreError` with capped backoff.

    Gives up after ``give_up_s`` seconds and re-raises, so a store that is gone for good still
    stops the process rather than hanging it. ``on_retry(error, delay)`` hears each retry
    (default: a warning in the log; a command a person typed says it once on stderr).
    """

    def __init__(self, inner: Any, *, give_up_s: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep,
                 on_retry: Callable[[StoreError, float], None] | None = None) -> None:
        self._inner = inner
        self._give_up_s = give_up_s
        self._sleep = sleep
        self._on_retry = on_retry or _log_retry

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            delay, waited = 0.1, 0.0
            while True:
                try:
                    return target(*args, **kwargs)
                except StoreError as exc:
                    if waited >= self._give_up_s:
                        raise
                    self._on_retry(exc, delay)
                    self._sleep(delay)
                    waited += delay
                    delay = min(delay * 2, 2.0)

        return call


def _log_retry(exc: StoreError, delay: float) -> None:
    log.warning("state store unavailable (%s); retrying in %.1fs", exc, delay)
