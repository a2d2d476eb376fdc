"""Readiness probes: one quick attempt each, True when the service answers as it should.

Standard library only. The Kafka probe speaks the wire protocol itself (ApiVersions v0, then a
non-flexible Metadata request), so `stack up` needs no Kafka client and no second JVM.
"""

from __future__ import annotations

import socket
import struct
import urllib.request

from .settings import HOST

__all__ = ["http_ok", "kafka_answers", "kafka_metadata", "port_taken", "redis_answers"]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf += chunk
    return buf


def _kafka_call(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    """One request/response with a v1 request header (non-flexible versions only)."""
    client = b"driftscope-stack"
    msg = struct.pack(">hhih", api_key, version, corr, len(client)) + client + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    resp = _recv_exact(sock, size)
    if struct.unpack_from(">i", resp)[0] != corr:
        raise ConnectionError("correlation id mismatch")
    return resp[4:]


def kafka_metadata(host: str, port: int, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """The brokers of a Metadata request (ApiVersions first, to pick a version the broker has).

    Returns ``[(node_id, host, port), ...]``; raises OSError/ValueError when the broker does not
    answer properly. Only non-flexible Metadata versions (1-8) are spoken.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        resp = _kafka_call(sock, 18, 0, 1, b"")  # ApiVersions v0
        error, count = struct.unpack_from(">hi", resp)
        if error:
            raise ValueError(f"ApiVersions error {error}")
        ranges = {k: (lo, hi) for k, lo, hi in struct.iter_unpack(">hhh", resp[6 : 6 + 6 * count])}
        lo, hi = ranges.get(3, (99, -1))
        version = max(lo, 4)
        if version > min(hi, 8):
            raise ValueError(f"no Metadata version in 1..8 among {lo}..{hi}")
        body = struct.pack(">ib", -1, 0) + (b"\x00\x00" if version >= 8 else b"")
        resp = _kafka_call(sock, 3, version, 2, body)
    pos = 4  # throttle_time_ms
    (n,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    brokers = []
    for _ in range(n):
        node_id, hlen = struct.unpack_from(">ih", resp, pos)
        pos += 6
        bhost = resp[pos : pos + hlen].decode()
        pos += hlen
        bport, rlen = struct.unpack_from(">ih", resp, pos)
        pos += 6 + max(rlen, 0)
        brokers.append((node_id, bhost, bport))
    return brokers


def kafka_answers(port: int) -> bool:
    """A Metadata request to 127.0.0.1:``port`` names at least one broker."""
    try:
        return len(kafka_metadata(HOST, port)) >= 1
    except (OSError, ValueError, struct.error):
        return False


def redis_answers(port: int, password: str = "") -> bool:
    """PING on 127.0.0.1:``port`` gets PONG (after AUTH when ``password`` is set)."""
    try:
        with socket.create_connection((HOST, port), timeout=2.0) as sock:
            if password:
                pw = password.encode()
                sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw))
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def http_ok(url: str) -> bool:
    """GET ``url`` answers 200 (Prometheus' and Alertmanager's ``/-/ready``)."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def port_taken(port: int) -> bool:
    """Something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0
