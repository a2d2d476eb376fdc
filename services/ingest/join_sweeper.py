"""A thread that settles the spans whose wait for content ran out while no request came.

Every decode settles expired spans already (:meth:`RecordDecoder.decode_as`), so a busy
receiver needs no sweeper; a quiet one would otherwise hold its last spans until the next
request. Without ``keep_contentless`` a settled span is only a ``no_content`` count; with it,
it is an event that ``deliver`` produces — if that fails, the events are logged as lost (the
client already had its 200; there is nothing to retry them from).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from driftscope_llm.services.ingest.results import Decoded

__all__ = ["JoinSweeper"]

log = logging.getLogger("driftscope.ingest.join")


class JoinSweeper:
    """Call ``expire()`` every ``interval_s`` and hand what it settled to ``deliver``;
    :meth:`stop` settles everything still held (``expire(everything=True)``) one last time."""

    def __init__(self, expire: Callable[..., Decoded], deliver: Callable[[Decoded], None],
                 interval_s: float = 1.0) -> None:
        self.expire = expire
        self.deliver = deliver
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="content-join")

    def start(self) -> JoinSweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._sweep(everything=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sweep(everything=False)

    def _sweep(self, *, everything: bool) -> None:
        decoded = self.expire(everything=everything)
        if not decoded.events and not decoded.rejects:
            return
        try:
            self.deliver(decoded)
        except Exception as exc:  # the thread must live on; the loss is said, not hidden
            log.warning("lost %d events of spans that waited for their content: %s",
                        len(decoded.events), exc)
