"""How to reach Redis: the state store's own settings.

Composed into every deployable's settings by :mod:`driftscope_llm.services.config` (``redis:``
in the YAML file, ``DRIFTSCOPE_REDIS__URL`` and so on in the environment); the store receives
this sub-model only (:func:`driftscope_llm.services.store.connect.open_store`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr

__all__ = ["RedisSettings"]


class RedisSettings(BaseModel):
    """How to reach Redis. ``username`` + ``password`` authenticate as an ACL user (Redis 6+);
    ``password`` alone answers ``requirepass``. A ``rediss://`` URL turns on TLS, checked against
    ``ssl_ca_certs`` when set. Secrets may come from ``DRIFTSCOPE_REDIS__PASSWORD``."""

    url: str = "redis://127.0.0.1:16379/0"
    username: str | None = None
    password: SecretStr | None = None
    ssl_ca_certs: Path | None = None
    key_prefix: str = "driftscope:"
    socket_timeout_s: float = Field(default=5.0, gt=0)
    retention_s: int = Field(
        default=30 * 24 * 3600, ge=60,
        description="Incident records (with their exemplars and reports) expire after this.")

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url(self.url, **kwargs)``."""
        kw: dict[str, Any] = {
            "socket_timeout": self.socket_timeout_s,
            "socket_connect_timeout": self.socket_timeout_s,
        }
        if self.username:
            kw["username"] = self.username
        if self.password is not None:
            kw["password"] = self.password.get_secret_value()
        if self.ssl_ca_certs is not None:
            kw["ssl_ca_certs"] = str(self.ssl_ca_certs)
        return kw
