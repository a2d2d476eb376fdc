"""Fail fast on wrong Kafka credentials.

kafka-python answers a rejected SASL login by retrying the bootstrap until its timeout and then
reports only "Unable to bootstrap". :func:`check_kafka_auth` instead opens one connection to
each bootstrap server, speaks the SASL handshake itself (Kafka protocol: ApiVersions v0,
SaslHandshake v1, SaslAuthenticate v1) and raises a
:class:`~driftscope_llm.services.errors.BusError` that says what the broker said: unknown
mechanism, or authentication failed for user U. The password never appears in it. It lives
beside the Kafka bus, the only other module that speaks to brokers.

PLAIN is checked end to end; for SCRAM only the mechanism is (a SCRAM exchange needs the client
library), and a wrong SCRAM password still surfaces as the client's bootstrap timeout.
"""

from __future__ import annotations

import socket
import struct

from driftscope_llm.services.bus.settings import KafkaSettings
from driftscope_llm.services.errors import BusError

__all__ = ["check_kafka_auth"]

_SASL_AUTHENTICATION_FAILED = 58


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return buf


def _call(sock: socket.socket, api: int, version: int, corr: int, body: bytes) -> bytes:
    client = b"driftscope-preflight"
    msg = struct.pack(">hhih", api, version, corr, len(client)) + client + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", _recv(sock, 4))
    resp = _recv(sock, size)
    if struct.unpack_from(">i", resp)[0] != corr:
        raise ConnectionError("correlation id mismatch")
    return resp[4:]


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _check_one(host: str, port: int, settings: KafkaSettings, timeout: float) -> None:
    mech = settings.sasl_mechanism or "PLAIN"
    where = f"{host}:{port}"
    with socket.create_connection((host, port), timeout=timeout) as sock:
        resp = _call(sock, 17, 1, 1, _string(mech))  # SaslHandshake v1
        (error,) = struct.unpack_from(">h", resp)
        if error:
            (n,) = struct.unpack_from(">i", resp, 2)
            pos, offered = 6, []
            for _ in range(max(n, 0)):
                (ln,) = struct.unpack_from(">h", resp, pos)
                offered.append(resp[pos + 2:pos + 2 + ln].decode(errors="replace"))
                pos += 2 + ln
            raise BusError(f"kafka at {where} does not accept SASL mechanism {mech} "
                           f"(it offers {offered or 'none'})", address=where)
        if mech != "PLAIN":
            return
        user = settings.sasl_username or ""
        pw = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        token = b"\0" + user.encode() + b"\0" + pw.encode()
        resp = _call(sock, 36, 1, 2, struct.pack(">i", len(token)) + token)  # SaslAuthenticate
        error, mlen = struct.unpack_from(">hh", resp)
        if error:
            said = resp[4:4 + mlen].decode(errors="replace") if mlen > 0 else ""
            what = ("authentication failed" if error == _SASL_AUTHENTICATION_FAILED
                    else f"error {error}")
            raise BusError(f"kafka at {where} refused SASL/{mech} login for user {user!r}: "
                           f"{what}{f' ({said})' if said else ''}", address=where)


def check_kafka_auth(settings: KafkaSettings, *, timeout_s: float = 10.0) -> None:
    """Raise :class:`BusError` when a bootstrap server rejects these SASL settings.

    Does nothing for PLAINTEXT/SSL settings (TLS handshakes are the client's business). A server
    that cannot be reached at all is left to the client, which retries it.
    """
    if settings.security_protocol != "SASL_PLAINTEXT":
        return
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _check_one(host.strip("[]"), int(port), settings, timeout_s)
        except BusError:
            raise
        except (OSError, ValueError, struct.error):
            continue  # unreachable or not speaking Kafka: the client reports that itself
