"""``--help`` of every command is plain text: no reStructuredText markup (``code``, :role:`x`)
from docstrings, and every command and group answers ``--help`` with exit 0, at 80 and 40
columns."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app

MARKUP = re.compile(r"`|:[a-z]+:`|\.\. [a-z]+::")


def _paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _paths(sub, (*path, name))


PATHS = list(_paths(typer.main.get_command(app)))


def test_the_walk_finds_the_commands() -> None:
    assert {("demo",), ("replay",), ("deploy", "export"), ("incidents", "list"),
            ("attribution", "index", "build"), ("models", "export-embedder")} <= set(PATHS)


@pytest.mark.parametrize("columns", ["80", "40"])
@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "driftscope")
def test_help_is_plain_text(path: tuple[str, ...], columns: str) -> None:
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": columns})
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.stdout
    marked = [line for line in res.stdout.splitlines() if MARKUP.search(line)]
    assert marked == [], "\n".join(marked)
