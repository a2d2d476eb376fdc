"""The one side effect of delivery, an HTTP POST, behind a small Protocol.

:class:`UrllibTransport` is the production implementation (standard library only). A test hands
the notifier the same transport pointed at a real server on loopback; anything else with a
``post`` of this shape (an httpx wrapper, a proxy-aware client) plugs in the same way.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["HttpResponse", "HttpTransport", "TransportError", "UrllibTransport"]


@dataclass(frozen=True)
class HttpResponse:
    status: int
    retry_after_s: float | None = None


class TransportError(Exception):
    """No HTTP answer (refused, reset, timed out, TLS). ``kind`` is a short class name; the
    message never includes the URL."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class HttpTransport(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             timeout_s: float) -> HttpResponse:
        """POST ``body``; the answer's status, or TransportError when there is none."""
        ...


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None  # an HTTP-date: ignored, the backoff policy decides


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the 3xx it is: a webhook that moved must be reconfigured, and
    re-POSTing a signed body to wherever a server points is not something to do silently."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class UrllibTransport:
    """POST with :mod:`urllib.request`; never follows redirects; reads at most 64 KiB back."""

    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirect())

    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             timeout_s: float) -> HttpResponse:
        req = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        try:
            with self._opener.open(req, timeout=timeout_s) as resp:
                resp.read(65536)
                return HttpResponse(int(resp.status), _retry_after(resp.headers.get("Retry-After")))
        except urllib.error.HTTPError as exc:
            with exc:
                return HttpResponse(int(exc.code), _retry_after(exc.headers.get("Retry-After")))
        except urllib.error.URLError as exc:
            reason = exc.reason
            kind = type(reason).__name__ if isinstance(reason, BaseException) else "URLError"
            raise TransportError(kind) from None
        except TimeoutError:
            raise TransportError("TimeoutError") from None
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(type(exc).__name__) from None
