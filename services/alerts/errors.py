"""Errors of the alerting package, under :class:`driftscope_llm.services.errors.DriftscopeError`.

::

    DriftscopeError
    └── SignatureError(ValueError)    a webhook signature was refused; .reason
                                      (missing | malformed | stale | mismatch | replayed),
                                      .timestamp (the signed time, when it could be read)

Delivery failures are not raised: they end as dead-letter records
(``driftscope_llm.services.alerts.deadletter``) and a failing sink raises
:class:`driftscope_llm.services.errors.StoreError`. No error here ever carries a secret:
endpoints are named by their configured ``name``, never by their URL (a Slack incoming-webhook
URL *is* a credential), and a signature failure says why, never what was expected.
"""

from __future__ import annotations

from driftscope_llm.services.errors import DriftscopeError

__all__ = ["SIGNATURE_REASONS", "SignatureError"]

SIGNATURE_REASONS = ("missing", "malformed", "stale", "mismatch", "replayed")


class SignatureError(DriftscopeError, ValueError):
    """A request's ``X-Driftscope-Signature`` was refused; ``reason`` says why (one of
    ``SIGNATURE_REASONS``), ``timestamp`` is the signed time when it could be read."""

    def __init__(self, reason: str, detail: str, *, timestamp: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.timestamp = timestamp
