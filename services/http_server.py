"""A threaded HTTP/1.1 server fit for clients on the open internet: driftscope's receivers' base.

The OTLP receiver (``driftscope ingest``) and the Alertmanager receiver serve on this. It is the
standard library's :class:`~http.server.ThreadingHTTPServer` configured to what a production
server does by default, because the stdlib's defaults are not safe to expose:

==========================  ==================================================================
stdlib default              here (:class:`ServerLimits`)
==========================  ==================================================================
listen backlog 5: a burst   ``backlog`` 1024 (the kernel caps it at ``net.core.somaxconn``):
of 100 connections gets     a burst waits in the kernel's queue instead
most of them reset
no read timeout: a client   ``header_timeout_s`` (10 s) for the request line and headers,
sending a partial request   counted from the moment the server waits for them (keep-alive idle
holds its thread forever    time included), and ``body_timeout_s`` (30 s) for the body. Both
(slowloris)                 are *deadlines*, not per-``recv`` timeouts, so a byte a second does
                            not extend them; past one the request gets ``408`` and the
                            connection is closed
a thread per connection,    ``max_connections`` (256) threads at most; further connections
unbounded                   wait in the backlog until one ends (``408`` deadlines bound how
                            long that is)
``Content-Length`` read     :func:`content_length`: ASCII digits only (``²`` is a digit to
with ``int()``              ``str.isdigit``), at most 18 of them, repeated headers must agree,
                            ``Transfer-Encoding`` refused
==========================  ==================================================================

Why not uvicorn or gunicorn: both receivers' work is blocking (waiting for Kafka's
acknowledgement, a webhook relay queue), so an ASGI server would run it in a thread pool
anyway; uvicorn has no deadline for reading a request's headers or body (it relies on a proxy
in front), and either would be a new dependency of the base install for two small endpoints.
This keeps the handlers as they are and closes the gaps the stdlib leaves open
(``tests/unit/test_http_strict.py``, ``tests/integration/test_receiver_hardening.py``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["GuardedHandler", "GuardedServer", "RequestRefused", "ServerLimits",
           "content_length"]

_MAX_LENGTH_DIGITS = 18  # 10^18 bytes: far past any limit, far below int()'s digit cap


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """How many connections a server holds and how long a client may take to send a request."""

    backlog: int = 1024
    max_connections: int = 256
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0


class RequestRefused(Exception):
    """A request the server will not read further: ``status`` (400, 408, 411, 413) and why.

    The connection must be closed after answering it (its unread body cannot be framed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def content_length(headers: Any) -> int:
    """The request's body length from its headers, strictly (RFC 9112 §6).

    ``RequestRefused`` 411 without a ``Content-Length`` or with a ``Transfer-Encoding`` (chunked
    bodies are refused: the size must be known to bound it), 400 when a value is not ASCII
    digits (``²``, ``+5``, `` 5``, ``0x10``), longer than 18 digits, or when repeated headers
    (or a comma-separated list) disagree. Identical repeats are one value, as RFC 9112 allows.

    >>> from email.message import Message
    >>> m = Message(); m["Content-Length"] = "12"
    >>> content_length(m)
    12
    >>> m["Content-Length"] = "13"
    >>> content_length(m)
    Traceback (most recent call last):
    ...
    driftscope_llm.services.http_server.RequestRefused: conflicting Content-Length values
    """
    if headers.get("Transfer-Encoding") is not None:
        raise RequestRefused(411, "Transfer-Encoding is not accepted; send a Content-Length")
    values = [v.strip() for h in (headers.get_all("Content-Length") or [])
              for v in str(h).split(",")]
    if not values:
        raise RequestRefused(411, "Content-Length required")
    for value in values:
        if not (value.isascii() and value.isdigit()) or len(value) > _MAX_LENGTH_DIGITS:
            raise RequestRefused(400, "Content-Length must be a decimal number of bytes")
    if len({int(v) for v in values}) > 1:
        raise RequestRefused(400, "conflicting Content-Length values")
    return int(values[0])


class _Deadlines:
    """Connections with a deadline; a reaper thread shuts the read side of those past it, which
    ends any read blocked on them (the handler then answers 408 on the still open write side)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[socket.socket, float] = {}
        self._expired: set[socket.socket] = set()

    def arm(self, conn: socket.socket, seconds: float) -> None:
        with self._lock:
            self._due[conn] = time.monotonic() + seconds
            self._expired.discard(conn)

    def disarm(self, conn: socket.socket) -> None:
        with self._lock:
            self._due.pop(conn, None)

    def forget(self, conn: socket.socket) -> None:
        with self._lock:
            self._due.pop(conn, None)
            self._expired.discard(conn)

    def expired(self, conn: socket.socket) -> bool:
        with self._lock:
            return conn in self._expired

    def reap(self) -> int:
        now = time.monotonic()
        with self._lock:
            late = [c for c, due in self._due.items() if due <= now]
            for conn in late:
                del self._due[conn]
                self._expired.add(conn)
        for conn in late:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RD)
        return len(late)


class GuardedServer(ThreadingHTTPServer):
    """:class:`ThreadingHTTPServer` with the backlog, connection cap and read deadlines of
    ``limits``; serve it with :class:`GuardedHandler` subclasses."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 limits: ServerLimits | None = None) -> None:
        self.limits = limits or ServerLimits()
        self.request_queue_size = self.limits.backlog  # read by server_activate's listen()
        self.deadlines = _Deadlines()
        self._slots = threading.BoundedSemaphore(self.limits.max_connections)
        self._closing = threading.Event()
        super().__init__(address, handler)
        self._reaper = threading.Thread(target=self._reap, name="http-deadlines", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        tick = min(0.25, self.limits.header_timeout_s / 4, self.limits.body_timeout_s / 4)
        while not self._closing.wait(tick):
            self.deadlines.reap()

    def process_request(self, request: Any, client_address: Any) -> None:
        # at the cap, stop accepting: the next connections wait in the kernel's backlog
        while not self._slots.acquire(timeout=0.2):
            if self._closing.is_set():
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.deadlines.forget(request)
            self._slots.release()

    def shutdown(self) -> None:
        self._closing.set()
        super().shutdown()

    def server_close(self) -> None:
        self._closing.set()
        super().server_close()


class GuardedHandler(BaseHTTPRequestHandler):
    """A request handler whose reads are bounded by its :class:`GuardedServer`'s deadlines.

    Subclasses read a body with :meth:`read_body`, which raises :class:`RequestRefused`; answer
    it in the subclass's own format and close the connection."""

    server: GuardedServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # bounds a stalled send; reads end at their deadline first (the reaper then answers 408)
        limits = self.server.limits
        self.connection.settimeout(2 * max(limits.header_timeout_s, limits.body_timeout_s) + 1)

    def handle_one_request(self) -> None:
        # the request line and headers, keep-alive idle time included, within one deadline
        self.server.deadlines.arm(self.connection, self.server.limits.header_timeout_s)
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        finally:
            self.server.deadlines.disarm(self.connection)

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers (to EOF when the deadline hit)
        if parsed and self.server.deadlines.expired(self.connection):
            self.send_error(408, "request headers not received in time")
            self.close_connection = True
            return False
        return parsed

    def read_body(self, max_bytes: int) -> bytes:
        """The body, whole, within ``body_timeout_s``: 411/400 for a missing or malformed
        length (:func:`content_length`), 413 over ``max_bytes`` (nothing read), 408 when it does
        not arrive in time or the client stops short."""
        try:
            length = content_length(self.headers)
            if length > max_bytes:
                raise RequestRefused(413, f"body of {length} bytes exceeds {max_bytes}")
        except RequestRefused:
            self.close_connection = True
            raise
        deadlines = self.server.deadlines
        deadlines.arm(self.connection, self.server.limits.body_timeout_s)
        try:
            body = self.rfile.read(length)
        except OSError:  # a stalled read past the socket timeout, or a reset
            body = b""
        finally:
            deadlines.disarm(self.connection)
        if len(body) < length:
            self.close_connection = True
            raise RequestRefused(408, f"body not received in time ({len(body)} of {length} "
                                      "bytes)")
        return body
