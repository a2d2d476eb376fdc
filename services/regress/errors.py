"""Errors of the regression gate, under the project's one root
(:mod:`driftscope_llm.services.errors`).

::

    DriftscopeError
    └── RegressError
        ├── ProbeSuiteError(ValueError)   a probe file that cannot be used; .path, .line, .probe_id
        ├── GateInputError(ValueError)    too few generations to decide; .side, .needed, .got
        ├── ModelSpecError(ValueError)    a model argument that names no usable model; .spec
        └── EndpointError(ServiceError)   an OpenAI-compatible endpoint failed; .url, .status

The CLI maps the ``ValueError`` ones to exit 2 (fix your input) and :class:`EndpointError` to
exit 3 (a service could not be reached or answered badly).
"""

from __future__ import annotations

from driftscope_llm.services.errors import DriftscopeError, ServiceError

__all__ = ["EndpointError", "GateInputError", "ModelSpecError", "ProbeSuiteError", "RegressError"]


class RegressError(DriftscopeError):
    """Root of the regression gate's errors."""


class ProbeSuiteError(RegressError, ValueError):
    """A probe suite that cannot be used: ``path``, the 1-based ``line``, the ``probe_id``."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 probe_id: str | None = None) -> None:
        where = f"{path}:{line}: " if path is not None and line is not None else (
            f"{path}: " if path is not None else "")
        super().__init__(where + message)
        self.path = path
        self.line = line
        self.probe_id = probe_id


class GateInputError(RegressError, ValueError):
    """One side has too few generations for the detectors: ``side``, ``needed``, ``got``."""

    def __init__(self, message: str, *, side: str, needed: int, got: int) -> None:
        super().__init__(message)
        self.side = side
        self.needed = needed
        self.got = got


class ModelSpecError(RegressError, ValueError):
    """A model argument that is neither a model directory nor an http(s) endpoint URL."""

    def __init__(self, message: str, *, spec: str) -> None:
        super().__init__(message)
        self.spec = spec


class EndpointError(RegressError, ServiceError):
    """An OpenAI-compatible endpoint was unreachable or answered without what the gate needs."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message, service="openai-compatible endpoint", address=url)
        self.url = url
        self.status = status
