"""Opening the state store from settings: the one place a Redis client is made.

Every entrypoint (collector, worker, CLI commands, the alert receiver) calls :func:`open_store`
with its ``redis`` settings, so credentials, TLS, timeouts, the key prefix and the retention
apply everywhere alike; :func:`open_dead_letters` opens the webhook dead-letter list
(:mod:`~driftscope_llm.services.store.undelivered`) beside the store the same way.
:func:`connect` gives the bare client; nothing outside this package uses it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import redis

from driftscope_llm.services.errors import StoreError
from driftscope_llm.services.store.redis_store import RedisStore
from driftscope_llm.services.store.retry import RetryingStore
from driftscope_llm.services.store.undelivered import RedisDeadLetterSink

if TYPE_CHECKING:
    from driftscope_llm.services.store.base import StateStore
    from driftscope_llm.services.store.settings import RedisSettings

__all__ = ["address", "connect", "open_dead_letters", "open_store", "ping"]

#: How long a long-running service rides out a Redis restart before it gives up.
SERVICE_GIVE_UP_S = 120.0
#: How long a command a person typed waits for Redis before saying it is unreachable.
COMMAND_GIVE_UP_S = 5.0


def address(settings: RedisSettings) -> str:
    """The Redis URL without any credentials in it: safe to print or log."""
    parts = urllib.parse.urlsplit(settings.url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def connect(settings: RedisSettings) -> redis.Redis[bytes]:
    """A client for ``settings`` (URL, username/password, TLS CA, timeouts)."""
    client: redis.Redis[bytes] = redis.Redis.from_url(settings.url, **settings.client_kwargs())
    return client


def open_store(settings: RedisSettings, *, give_up_s: float | None = SERVICE_GIVE_UP_S,
               client: redis.Redis[bytes] | None = None,
               on_retry: Callable[[StoreError, float], None] | None = None) -> StateStore:
    """The state store for ``settings``: a :class:`RedisStore` with the settings' key prefix
    and retention, retrying a failed call for up to ``give_up_s`` seconds (``None``: no
    retries). ``client`` reuses a client from :func:`connect` (e.g. one shared with the
    webhook dead-letter sink). ``on_retry(error, delay)`` hears each retry (default: a log
    warning)."""
    inner = RedisStore(client if client is not None else connect(settings),
                       key_prefix=settings.key_prefix, retention_s=settings.retention_s)
    if give_up_s is None:
        return inner
    return cast("StateStore", RetryingStore(inner, give_up_s=give_up_s, on_retry=on_retry))


def open_dead_letters(settings: RedisSettings, *, key: str,
                      max_len: int = 10_000) -> RedisDeadLetterSink:
    """The webhook dead-letter list ``key`` (newest ``max_len`` kept) in the Redis of
    ``settings``; it implements the notifier's ``DeadLetterSink``."""
    return RedisDeadLetterSink(connect(settings), key=key, max_len=max_len)


def ping(settings: RedisSettings) -> str | None:
    """``None`` when Redis at ``settings`` answers (credentials included), else why not."""
    client = connect(settings)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


