"""The import-layer check of ``make check`` (import-linter contracts in pyproject.toml).

The contracts must hold on the real tree, must break when an upward import or a cycle appears
(so the check cannot silently pass), and must state the same layers as docs/architecture.md.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import grimp
import pytest
from importlinter.application.app_config import settings
from importlinter.application.use_cases import (
    _register_built_in_contract_types,
    create_report,
    read_user_options,
)
from importlinter.configuration import configure

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
S = "driftscope_llm.services"


class _GraphBuilder:
    """Builds the real import graph, then lets a test add imports to it."""

    def __init__(self, mutate: Callable[[grimp.ImportGraph], None]) -> None:
        self.mutate = mutate

    def build(self, root_package_names: list[str], cache_dir: str | None,
              include_external_packages: bool = False,
              exclude_type_checking_imports: bool = False) -> grimp.ImportGraph:
        graph = grimp.build_graph(*root_package_names, cache_dir=None,
                                  include_external_packages=include_external_packages,
                                  exclude_type_checking_imports=exclude_type_checking_imports)
        self.mutate(graph)
        return graph


@pytest.fixture()
def lint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., dict[str, bool]]]:
    """Run the pyproject contracts over the real graph (optionally mutated): {id: kept}."""
    configure()
    _register_built_in_contract_types()  # what the lint-imports command does first
    saved = settings.GRAPH_BUILDER

    def run(mutate: Callable[[grimp.ImportGraph], None] = lambda g: None) -> dict[str, bool]:
        settings.configure(GRAPH_BUILDER=_GraphBuilder(mutate))
        monkeypatch.chdir(ROOT)
        report = create_report(read_user_options(str(PYPROJECT)), cache_dir=None)
        return {contract.contract_options["id"]: check.kept
                for contract, check in report.get_contracts_and_checks()}

    yield run
    settings.configure(GRAPH_BUILDER=saved)


def test_the_tree_keeps_every_contract(lint: Callable[..., dict[str, bool]]) -> None:
    kept = lint()
    assert kept == {"layers": True, "acyclic": True}


@pytest.mark.parametrize("importer,imported", [
    (f"{S}.drift.settings", f"{S}.cli.main"),          # a pure core reaching for the CLI
    (f"{S}.store.base", f"{S}.collector.pipeline"),    # an I/O edge reaching for a component
    # the library reaching for services
    ("driftscope_llm.attribution.index.feature_index", f"{S}.store.base"),
])
def test_an_upward_import_breaks_the_layers(lint: Callable[..., dict[str, bool]],
                                            importer: str, imported: str) -> None:
    def upward(graph: grimp.ImportGraph) -> None:
        graph.add_import(importer=importer, imported=imported, line_number=1,
                         line_contents=f"import {imported}")

    assert lint(upward)["layers"] is False


def test_a_cycle_inside_a_package_breaks_the_acyclic_contract(
        lint: Callable[..., dict[str, bool]]) -> None:
    # monitor -> settings -> kinds already; kinds -> monitor closes a circle within drift.
    def circle(graph: grimp.ImportGraph) -> None:
        graph.add_import(importer=f"{S}.drift.kinds", imported=f"{S}.drift.monitor",
                         line_number=1, line_contents="import monitor")

    kept = lint(circle)
    assert kept["acyclic"] is False
    assert kept["layers"] is True  # same layer: only the cycle contract sees it


def _config_layers() -> list[set[str]]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["id"] == "layers"]
    return [{name.strip().strip("()") for name in layer.split("|")} for layer in layers]


def test_every_package_and_module_of_services_has_a_layer() -> None:
    # a package outside every layer would escape the check silently
    placed = set().union(*_config_layers())
    services = ROOT / "services"
    names = {p.name for p in services.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    names |= {p.stem for p in services.glob("*.py") if p.stem != "__init__"}
    missing = sorted(f"{S}.{n}" for n in names if f"{S}.{n}" not in placed)
    assert not missing, f"give these a layer (pyproject.toml, docs/architecture.md): {missing}"


def _doc_layers() -> list[set[str]]:
    """The layer table of docs/architecture.md, top first, as sets of full module names."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("```", 2)[1]
    rows: list[str] = []
    for line in table.splitlines():
        m = re.match(r"\s+(\d+)?\s{2,}(\|?\s*[a-z_.| ]+?)\s{2,}", line + "  ")
        if not m:
            continue
        cell = m.group(2)
        if m.group(1):
            rows.append(cell)
        elif rows and cell.startswith("|"):
            rows[-1] += " " + cell
    return [{f"driftscope_llm.{name.strip()}" for name in row.split("|") if name.strip()}
            for row in rows]


def test_the_contract_states_the_layers_of_the_architecture_doc() -> None:
    assert _doc_layers() == _config_layers()


def test_deployable_settings_are_defined_only_in_config() -> None:
    # "settings composed at the top": a pydantic-settings model anywhere else would be a second
    # home (and a component reading the environment itself)
    bases = {"BaseSettings", "DriftscopeSettings"}
    offenders = []
    for folder in ("services", "attribution"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "services" / "config.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and any(
                        getattr(b, "id", getattr(b, "attr", None)) in bases for b in node.bases):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert not offenders
