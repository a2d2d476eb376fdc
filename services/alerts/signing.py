"""Signing and verifying webhook bodies: ``X-Driftscope-Signature: t=<unix>,v1=<hex>``.

The scheme is Stripe's: ``v1 = HMAC-SHA256(key, f"{t}.{body}")`` in lowercase hex, where ``t`` is
the sender's Unix time in whole seconds and ``body`` the exact bytes of the request body. Binding
``t`` into the MAC lets a receiver refuse old requests (``tolerance_s``, default 300 s), which caps
how long a captured request can be replayed; within that window a receiver drops repeats of what
was signed (:class:`ReplayGuard`) or the payload's ``delivery_id``. During a key rotation the
header may carry several ``v1=`` entries, one per key; one match is enough.

The replay guard keys on the *signed message* — ``t`` and the body — never on the header's
spelling: verification accepts upper-case hex, spaces after commas, ``v0=`` and other unknown
parts, any order and repeated ``v1=`` entries, so a guard keyed on the raw header would let each
respelling of a used signature through again (and dropping one of two rotation signatures would
yield a second valid header for the same request).

Comparison is constant-time (:func:`hmac.compare_digest`). Errors say *why* a signature was refused
(``SignatureError.reason``), never what was expected.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Sequence

from pydantic import SecretStr

from driftscope_llm.services.alerts.errors import SignatureError

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_HEADER",
    "ReplayGuard",
    "compute_signature",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "X-Driftscope-Signature"
DEFAULT_TOLERANCE_S = 300.0
_MAX_HEADER = 2048


def compute_signature(body: bytes, secret: SecretStr, timestamp: int) -> str:
    """The ``v1`` value: hex HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``."""
    key = secret.get_secret_value().encode()
    return hmac.new(key, str(int(timestamp)).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: SecretStr | Sequence[SecretStr], timestamp: int) -> str:
    """The full header value for ``body`` signed at ``timestamp`` with each of ``secrets``."""
    keys = [secrets] if isinstance(secrets, SecretStr) else list(secrets)
    if not keys:
        raise ValueError("sign needs at least one secret")
    sigs = ",".join(f"v1={compute_signature(body, k, timestamp)}" for k in keys)
    return f"t={int(timestamp)},{sigs}"


def _parse(header: str) -> tuple[int, list[str]]:
    if len(header) > _MAX_HEADER:
        raise SignatureError("malformed", "signature header too long")
    timestamp: int | None = None
    sigs: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed", "expected comma-separated key=value pairs")
        if key == "t":
            # ASCII digits only: "²" and other Unicode digits pass str.isdigit, not int()
            if (timestamp is not None or not (value.isascii() and value.isdigit())
                    or len(value) > 12):
                raise SignatureError("malformed", "t must appear once, as whole Unix seconds")
            timestamp = int(value)
        elif key == "v1":
            sigs.append(value.lower())
        # other schemes (v0, future v2) are ignored, as Stripe's verifiers do
    if timestamp is None:
        raise SignatureError("malformed", "no t= timestamp")
    if not sigs:
        raise SignatureError("malformed", "no v1= signature", timestamp=timestamp)
    return timestamp, sigs


def verify(
    body: bytes,
    header: str | None,
    secrets: SecretStr | Sequence[SecretStr],
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> int:
    """Check ``header`` against ``body``; return the signed timestamp, or raise SignatureError.

    ``now`` is the receiver's Unix time (pass the clock in). A timestamp more than
    ``tolerance_s`` away from ``now`` (in either direction: a clock far ahead is as suspicious as
    an old request) is ``stale`` even when the MAC matches. ``secrets`` lists every key currently
    accepted.
    """
    if not header:
        raise SignatureError("missing", f"no {SIGNATURE_HEADER} header")
    timestamp, sigs = _parse(header)
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(
            "stale", f"signed {now - timestamp:.0f}s from now; tolerance {tolerance_s:.0f}s",
            timestamp=timestamp,
        )
    keys = [secrets] if isinstance(secrets, SecretStr) else list(secrets)
    for key in keys:
        expected = compute_signature(body, key, timestamp)
        # compare against every v1 so the time taken does not depend on which one matches
        matches = [hmac.compare_digest(expected, s) for s in sigs]
        if any(matches):
            return timestamp
    raise SignatureError("mismatch", "no v1 signature matches the body", timestamp=timestamp)


class ReplayGuard:
    """Remembers the requests accepted within the tolerance window and refuses a second one.

    A request is identified by what its signature covers, ``SHA-256(f"{t}." + body)``, so every
    spelling of its header counts as the same request (module docstring). Memory is bounded:
    entries older than ``tolerance_s`` are dropped (they would be refused as stale anyway), and at
    most ``max_entries`` are kept, oldest first out. One process only; a receiver behind a load
    balancer dedupes on ``delivery_id`` in shared storage instead.
    """

    def __init__(self, tolerance_s: float = DEFAULT_TOLERANCE_S, max_entries: int = 100_000):
        self.tolerance_s = tolerance_s
        self.max_entries = max_entries
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def request_id(body: bytes, timestamp: int) -> str:
        """The canonical identity of a signed request: a digest of exactly what was signed."""
        return hashlib.sha256(str(int(timestamp)).encode() + b"." + body).hexdigest()

    def check_and_remember(self, body: bytes, timestamp: int, now: float) -> None:
        """Raise SignatureError ``replayed`` when ``body`` signed at ``timestamp`` (as returned by
        :func:`verify`) was accepted before; else remember it. Call it only after ``verify``."""
        key = self.request_id(body, timestamp)
        with self._lock:
            self._expire(now)
            if key in self._seen:
                raise SignatureError("replayed", "this signed request was already used",
                                     timestamp=timestamp)
            self._seen[key] = timestamp
            while len(self._seen) > self.max_entries:
                del self._seen[next(iter(self._seen))]

    def _expire(self, now: float) -> None:
        # insertion order is close to timestamp order; stop at the first fresh entry
        for key, ts in list(self._seen.items()):
            if now - ts <= self.tolerance_s:
                break
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)
