"""An Alertmanager-compatible webhook receiver: a small HTTP server that checks who is calling,
parses Alertmanager's message and hands it to a handler.

Point an Alertmanager ``webhook_configs`` entry at ``http://HOST:PORT/alertmanager`` with
``http_config.authorization.credentials`` set to the receiver's ``bearer_token`` (see
``deploy/alertmanager/alertmanager.yml``); a driftscope sender may sign instead
(``X-Driftscope-Signature`` under one of ``signing_secrets``, replays refused). The usual handler
is :meth:`Notifier.notify_alerts`, which relays the alerts to driftscope's webhook endpoints
(signed generic JSON, Slack), so Prometheus alerts and drift incidents reach the same places.

Answers: ``200`` accepted; ``400`` not JSON (or nested deeper than 64 levels, or holding an
integer of more than 64 digits: refused before anything recurses), not an Alertmanager message,
or a request that could not be read; ``401`` no valid credentials (no detail given);
``404``/``405`` wrong path or method; ``408`` the request or its body did not arrive within its
deadline; ``409`` a replayed signed request (the same ``t`` and body, however its signature
header is spelled); ``411`` no ``Content-Length``; ``413`` body over ``max_body_bytes`` (refused
before reading it); ``500`` the handler failed — Alertmanager retries on 5xx, so a passing outage
of the handler loses nothing. ``GET /-/healthy`` answers 200 for probes. A ``Content-Length``
that is not ASCII digits, or two that disagree, is ``400``.

Served by :class:`~driftscope_llm.services.http_server.GuardedServer` (the standard library's
threaded server with a listen backlog, a connection cap and read deadlines: ``limits``). It is
meant for a trusted network next to Alertmanager; put TLS in front of it (ingress, sidecar)
when it is exposed.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from pydantic import ValidationError

from driftscope_llm.services.alerts.alertmanager import AlertmanagerMessage
from driftscope_llm.services.alerts.errors import SignatureError
from driftscope_llm.services.alerts.settings import AlertReceiverSettings
from driftscope_llm.services.alerts.signing import SIGNATURE_HEADER, ReplayGuard, verify
from driftscope_llm.services.errors import InvalidEventError
from driftscope_llm.services.http_server import (
    GuardedHandler,
    GuardedServer,
    RequestRefused,
    ServerLimits,
)
from driftscope_llm.services.schemas import loads_bounded

__all__ = ["AlertReceiver"]

log = logging.getLogger("driftscope.alerts.receiver")

Handler = Callable[[AlertmanagerMessage], object]


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AlertReceiver:
    """Serve ``settings.path`` until :meth:`close`; ``handler`` gets each accepted message.

    ``clock`` gives Unix seconds for signature freshness; ``limits`` bound connections and read
    times (defaults: :class:`ServerLimits`). ``port=0`` in the settings binds a free port;
    :attr:`port` tells which. Use as a context manager or call :meth:`start`/:meth:`close`.
    """

    def __init__(self, settings: AlertReceiverSettings, handler: Handler, *,
                 clock: Callable[[], float] = time.time,
                 limits: ServerLimits | None = None) -> None:
        self.settings = settings
        self.handler = handler
        self.clock = clock
        self.replays = ReplayGuard(settings.tolerance_s)
        self.accepted = 0
        self.refused = 0
        self._server = GuardedServer((settings.host, settings.port), _make_handler(self), limits)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}{self.settings.path}"

    def start(self) -> AlertReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        name="driftscope-alert-receiver", daemon=True)
        self._thread.start()
        log.info("alert receiver on %s", self.url)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> AlertReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- request handling (called from the server's threads) -----------------------------------

    def authenticate(self, headers: Any, body: bytes) -> None:
        """Accept a matching bearer token or a valid, fresh, unseen signature; else _Refused."""
        token = self.settings.bearer_token
        auth = headers.get("Authorization") or ""
        if token is not None and auth.startswith("Bearer "):
            given = auth[len("Bearer "):].strip().encode()
            if hmac.compare_digest(given, token.get_secret_value().encode()):
                return
        header = headers.get(SIGNATURE_HEADER)
        if self.settings.signing_secrets and header:
            now = self.clock()
            try:
                ts = verify(body, header, self.settings.signing_secrets, now=now,
                            tolerance_s=self.settings.tolerance_s)
                self.replays.check_and_remember(body, ts, now)
            except SignatureError as exc:
                if exc.reason == "replayed":
                    raise _Refused(409, "replayed") from None
                raise _Refused(401, "unauthorized") from None
            return
        if token is None and not self.settings.signing_secrets:
            return  # allow_unauthenticated (the settings refuse this combination otherwise)
        raise _Refused(401, "unauthorized")

    def accept(self, body: bytes) -> AlertmanagerMessage:
        try:
            data = loads_bounded(body)  # bounded: no recursion on a 50k-deep body
        except InvalidEventError as exc:
            if exc.reason == "not_json":
                raise _Refused(400, "body is not JSON") from None
            raise _Refused(400, f"body refused ({exc.reason}): {exc.detail}") from None
        try:
            return AlertmanagerMessage.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            detail = f"not an Alertmanager v4 message: {where}: {first['msg']}"
            raise _Refused(400, detail) from None


def _make_handler(receiver: AlertReceiver) -> type[BaseHTTPRequestHandler]:
    settings = receiver.settings

    class _Handler(GuardedHandler):
        server_version = "driftscope-receiver"
        sys_version = ""
        protocol_version = "HTTP/1.0"  # one request a connection, as before

        def do_GET(self) -> None:
            if self.path == "/-/healthy":
                self._answer(200, "ok")
            else:
                self._answer(404 if self.path != settings.path else 405, "not found")

        def do_POST(self) -> None:
            try:
                message = self._read_message()
            except _Refused as refused:
                receiver.refused += 1
                self._answer(refused.status, refused.message)
                return
            except Exception:  # a bug here must still answer, never drop the connection
                log.exception("unexpected error reading a request")
                receiver.refused += 1
                self.close_connection = True
                self._answer(400, "request could not be read")
                return
            try:
                receiver.handler(message)
            except Exception:
                log.exception("alert handler failed on group %s", message.group_key)
                self._answer(500, "handler failed")
                return
            receiver.accepted += 1
            self._answer(200, "ok")

        def _read_message(self) -> AlertmanagerMessage:
            if self.path.split("?", 1)[0] != settings.path:
                raise _Refused(404, "not found")
            try:  # refused (411, 413, 400) before reading when the length is missing or big
                body = self.read_body(settings.max_body_bytes)
            except RequestRefused as refused:
                raise _Refused(refused.status, refused.message) from None
            receiver.authenticate(self.headers, body)
            return receiver.accept(body)

        def _answer(self, status: int, text: str) -> None:
            data = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            # the request line has no secret (tokens travel in headers), but keep it at DEBUG
            log.debug("%s - %s", self.address_string(), format % args)

    return _Handler
