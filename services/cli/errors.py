"""Turning driftscope errors into one clear line and an exit code, never a traceback.

Exit codes scripts can rely on: 0 success, 1 a check found a problem (e.g. drift), 2 a usage or
input error the user can fix, 3 a service could not be reached, 4 something named was not found.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import typer
from pydantic import ValidationError

from driftscope_llm.services.errors import ConfigError, DriftscopeError, NotFoundError, ServiceError

__all__ = ["EXIT_FOUND", "EXIT_NOT_FOUND", "EXIT_SERVICE", "EXIT_USAGE", "friendly_errors",
           "user_errors"]

EXIT_FOUND = 1
EXIT_USAGE = 2
EXIT_SERVICE = 3
EXIT_NOT_FOUND = 4

P = ParamSpec("P")
R = TypeVar("R")


def _exit_code(exc: DriftscopeError) -> int:
    if isinstance(exc, ServiceError):
        return EXIT_SERVICE
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    return EXIT_USAGE


@contextmanager
def user_errors() -> Iterator[None]:
    """Inside a command: driftscope errors, missing files and settings out of range print one
    ``error: …`` line on stderr and exit with the code of the module docstring."""
    try:
        yield
    except (DriftscopeError, FileNotFoundError, IsADirectoryError) as exc:
        code = _exit_code(exc) if isinstance(exc, DriftscopeError) else EXIT_USAGE
        hint = ""
        if isinstance(exc, ConfigError) and exc.field:
            hint = f" (setting: {exc.field})"
        print(f"error: {exc}{hint}", file=sys.stderr)
        raise typer.Exit(code) from None
    except ValidationError as exc:  # a setting out of range
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        print(f"error: {where}: {first['msg']}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None


def friendly_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command in :func:`user_errors`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with user_errors():
            return fn(*args, **kwargs)

    return wrapper
