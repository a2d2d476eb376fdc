"""Every error driftscope raises on purpose.

One root, so a caller can catch "anything driftscope refused" with one clause, and builtin bases
where the meaning fits, so generic code (``except ValueError``) keeps working. Context travels as
attributes, never only inside the message.

::

    DriftscopeError
    ├── ConfigError(ValueError)             bad settings file or environment; .path, .field
    ├── InvalidEventError(ValueError)       an OutputEvent failed validation; .reason, .detail
    ├── DetectorError                       misuse of a drift detector
    │   ├── InsufficientDataError(ValueError)   too few finite values to test; .needed, .got
    │   └── StateMismatchError(ValueError)      restoring state saved under other settings
    ├── ServiceError(ConnectionError)       a backing service did not answer; .service, .address
    │   ├── BusError                        Kafka or the embedded bus; .topic, .partition, .offset
    │   └── StoreError                      Redis or the in-memory store; .key
    ├── NotFoundError(LookupError)          a missing incident, index or model; .what, .id
    ├── AmbiguousIdError(LookupError)       an id prefix that starts several ids; .prefix, .matches
    ├── MissingExtraError(ImportError)      an optional dependency is not installed; .extra
    └── AttributionError                    (see ``attribution.errors`` for its subtree)
"""

from __future__ import annotations

__all__ = [
    "AmbiguousIdError",
    "AttributionError",
    "BusError",
    "ConfigError",
    "DetectorError",
    "DriftscopeError",
    "InsufficientDataError",
    "InvalidEventError",
    "MissingExtraError",
    "NotFoundError",
    "ServiceError",
    "StateMismatchError",
    "StoreError",
]


class DriftscopeError(Exception):
    """Root of every error driftscope raises on purpose."""


class ConfigError(DriftscopeError, ValueError):
    """Settings that cannot be used. ``path`` is the file, ``field`` the offending key."""

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.field = field


class InvalidEventError(DriftscopeError, ValueError):
    """An incoming event failed validation.

    ``reason`` is a short machine-readable code (``not_json``, ``not_object``, ``missing_field``,
    ``wrong_type``, ``non_finite``, ``too_large``, ``too_deep``, ``invalid_text``,
    ``invalid_value``; the full list is ``schemas.INVALID_REASONS``); ``detail`` is for humans.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DetectorError(DriftscopeError):
    """A drift detector was used in a way it cannot honour."""


class InsufficientDataError(DetectorError, ValueError):
    """Too few finite observations for the test; ``needed`` and ``got`` count them."""

    def __init__(self, message: str, *, needed: int, got: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.got = got


class StateMismatchError(DetectorError, ValueError):
    """Saved state was produced under different settings and is refused."""


class ServiceError(DriftscopeError, ConnectionError):
    """A backing service (Kafka, Redis, Prometheus, a webhook) did not answer."""

    def __init__(self, message: str, *, service: str, address: str | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.address = address


class BusError(ServiceError):
    """The message bus failed; ``topic``/``partition``/``offset`` say where when known."""

    def __init__(
        self,
        message: str,
        *,
        address: str | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(message, service="kafka", address=address)
        self.topic = topic
        self.partition = partition
        self.offset = offset


class StoreError(ServiceError):
    """The state store failed; ``key`` says which record when known."""

    def __init__(self, message: str, *, address: str | None = None, key: str | None = None) -> None:
        super().__init__(message, service="redis", address=address)
        self.key = key


class NotFoundError(DriftscopeError, LookupError):
    """Something named by the user does not exist: ``what`` (incident, index, model) and ``id``."""

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident!r} not found")
        self.what = what
        self.id = ident


class AmbiguousIdError(DriftscopeError, LookupError):
    """An id prefix the user typed starts more than one ``what`` (incident): ``prefix`` and the
    ``matches`` found (at most a few; ``more`` says whether there were others). A usage error:
    typing more of the id resolves it."""

    def __init__(self, what: str, prefix: str, matches: list[str], *, more: bool) -> None:
        shown = ", ".join(matches) + (", …" if more else "")
        super().__init__(f"{what} prefix {prefix!r} is ambiguous: it starts {shown}; type more "
                         f"of the id")
        self.what = what
        self.prefix = prefix
        self.matches = matches
        self.more = more


class MissingExtraError(DriftscopeError, ImportError):
    """An optional dependency is missing; ``extra`` names what to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module} is not installed; install it with: pip install 'driftscope[{extra}]'"
        )
        self.extra = extra


class AttributionError(DriftscopeError):
    """Root of the attribution library's errors (tree in ``driftscope_llm.attribution.errors``)."""
