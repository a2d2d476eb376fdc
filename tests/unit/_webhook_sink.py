"""A real HTTP server on 127.0.0.1 that answers a script of statuses, for webhook tests.

``WebhookSink(script=[503, 503, 200])`` answers the first request 503, the second 503, then 200
for every later one (the last entry repeats). An entry may be ``("sleep", seconds, status)`` to
answer late (a timeout on the sender's side) or ``(status, {"Retry-After": "2"})`` for headers.
Every request is recorded (path, headers, body, receive time).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class WebhookSink:
    def __init__(self, script: list[Any] | None = None) -> None:
        self.script = list(script or [200])
        self.received: list[Received] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with sink._lock:
                    n = len(sink.received)
                    sink.received.append(
                        Received(self.path, dict(self.headers.items()), body, time.time())
                    )
                    step = sink.script[min(n, len(sink.script) - 1)]
                headers: dict[str, str] = {}
                if isinstance(step, tuple) and step[0] == "sleep":
                    time.sleep(step[1])
                    step = step[2]
                if isinstance(step, tuple):
                    step, headers = step
                try:
                    self.send_response(step)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> WebhookSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
