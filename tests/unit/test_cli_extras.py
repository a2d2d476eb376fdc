"""Commands that need an optional extra (``services/cli/extras.py``): the table names real
commands, the one-line message is exact, and a missing module is refused before the command runs.

Running each command without its extra, from the wheel alone, is
``tests/integration/test_wheel_install.py``; here the dev install (every extra present) stands in
for "extra installed", and a made-up extra for "extra missing".
"""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from driftscope_llm.services.cli import extras
from driftscope_llm.services.cli.main import app


def test_every_entry_names_a_command_of_the_app() -> None:
    # main.py guarded the app already; a second pass finds the same commands and no stranger
    assert extras.guard_commands(app) == []


def test_the_message_names_the_command_and_the_extra() -> None:
    assert extras.need_message("demo", "attribution") == (
        "error: driftscope demo needs the 'attribution' extra: "
        "pip install 'driftscope[attribution]'")


def test_the_dev_install_has_every_extra() -> None:
    for extra in extras.EXTRA_MODULES:
        assert extras.missing_modules(extra) == [], extra


def _toy_app(ran: list[str]) -> typer.Typer:
    toy = typer.Typer()
    group = typer.Typer()
    toy.add_typer(group, name="index")

    @group.command("build")
    def build(url: str = "") -> None:
        ran.append(url)

    @toy.command()
    def other() -> None:
        ran.append("other")

    return toy


def test_a_missing_module_is_refused_with_exit_2_before_the_command_runs(monkeypatch) -> None:
    ran: list[str] = []
    toy = _toy_app(ran)
    monkeypatch.setitem(extras.EXTRA_MODULES, "attribution", ("json", "no_such_module_xyz"))
    needs = {"index build": extras.Need("attribution", when=lambda p: not p["url"]),
             "gone": extras.Need("attribution")}
    assert extras.guard_commands(toy, needs) == ["gone"]  # a name that matches no command
    res = CliRunner().invoke(toy, ["index", "build"])
    assert (res.exit_code, res.stderr, ran) == (
        2, "error: driftscope index build needs the 'attribution' extra: "
           "pip install 'driftscope[attribution]'\n", [])
    # the predicate sees the command's parameters: here the need does not apply
    res = CliRunner().invoke(toy, ["index", "build", "--url", "http://x"])
    assert (res.exit_code, ran) == (0, ["http://x"])
    # --help never needs the extra
    res = CliRunner().invoke(toy, ["index", "build", "--help"])
    assert res.exit_code == 0 and "--url" in res.stdout
    res = CliRunner().invoke(toy, ["other"])
    assert (res.exit_code, ran) == (0, ["http://x", "other"])


def test_regress_needs_torch_only_for_a_local_model() -> None:
    need = extras.COMMAND_NEEDS["regress"]
    url = "http://127.0.0.1:8000/v1"
    assert need.when({"baseline": url, "candidate": "https://h/v1#m"}) is False
    assert need.when({"baseline": url, "candidate": "models/v2"}) is True
    assert need.when({"baseline": "models/v1", "candidate": url}) is True
