"""Errors raised by the attribution library.

Every class here descends from :class:`driftscope_llm.services.errors.AttributionError`, so a
caller can catch "anything attribution refused" with one clause; builtin bases are added where the
meaning fits. Context travels as attributes.

::

    AttributionError (driftscope_llm.services.errors)
    ├── CorpusError(ValueError)            a corpus/queries file cannot be used; .path, .line
    ├── UnknownMethodError(LookupError)    no method registered under that name; .name, .available
    ├── SettingsError(ValueError)          a method variant or option that does not exist; .field
    ├── ModelLoadError(ValueError)         a model or adapter directory cannot be loaded; .path
    ├── ReplayError(ValueError)            a fine-tune cannot be replayed exactly; .field, .error
    └── IndexError_(ValueError)            an index directory cannot be used; .path
        ├── IndexMismatchError             manifest disagrees with model/corpus/settings; .field,
        │                                  .expected, .found
        └── IndexCorruptError              a shard is missing or fails its sha256; .shard
"""

from __future__ import annotations

from driftscope_llm.services.errors import AttributionError

__all__ = [
    "AttributionError",
    "CorpusError",
    "IndexCorruptError",
    "IndexError_",
    "IndexMismatchError",
    "ModelLoadError",
    "ReplayError",
    "SettingsError",
    "UnknownMethodError",
]


class CorpusError(AttributionError, ValueError):
    """A corpus or queries JSONL file is unusable; ``line`` is 1-based when a line is at fault."""

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class UnknownMethodError(AttributionError, LookupError):
    """No attribution method is registered under ``name``."""

    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(f"unknown attribution method {name!r}; available: {', '.join(available)}")
        self.name = name
        self.available = available


class SettingsError(AttributionError, ValueError):
    """A setting (``field``) has a value the chosen method does not support."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class ModelLoadError(AttributionError, ValueError):
    """A model or adapter directory at ``path`` cannot be loaded."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class ReplayError(AttributionError, ValueError):
    """A recorded fine-tune cannot be replayed exactly (:mod:`driftscope_llm.attribution.replay`):
    ``field`` names what disagrees (corpus, kind, dropout, reproduction…); ``error`` is the
    replay's max weight difference when the reproduction check failed."""

    def __init__(self, message: str, *, field: str, error: float | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.error = error


class IndexError_(AttributionError, ValueError):
    """An index directory at ``path`` cannot be used."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class IndexMismatchError(IndexError_):
    """The index manifest does not match the model, corpus or settings it is used with."""

    def __init__(self, *, path: str, field: str, expected: object, found: object) -> None:
        super().__init__(
            f"index at {path} does not match this run: {field} is {found!r} in the index "
            f"but {expected!r} here; rebuild the index or use the matching model/settings",
            path=path,
        )
        self.field = field
        self.expected = expected
        self.found = found


class IndexCorruptError(IndexError_):
    """A shard listed in the manifest is missing or its sha256 does not match."""

    def __init__(self, message: str, *, path: str, shard: str) -> None:
        super().__init__(message, path=path)
        self.shard = shard
