"""``driftscope deploy export DIR``: the monitoring files a deployment needs, from the package.

The Prometheus scrape configuration and rules, the Alertmanager routing to driftscope's receiver
and the Grafana dashboards with their provisioning ship inside the installed package
(``driftscope_llm/deploy`` and ``driftscope_llm/grafana``), so someone who ran
``pip install driftscope`` has them without the repository. In a source checkout they are the
repository's ``deploy/`` and ``grafana/`` folders themselves. What each file is for is in its
header and in README "Deploy".
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

import driftscope_llm.services
from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.errors import ConfigError
from driftscope_llm.services.textsafety import terminal

__all__ = ["ASSETS", "asset_files", "assets_root", "deploy_app", "register"]

ASSETS: dict[str, tuple[str, ...]] = {
    "deploy": ("prometheus/prometheus.yml", "prometheus/rules/*.yml",
               "alertmanager/alertmanager.yml"),
    "grafana": ("dashboards/*.json", "provisioning/*/*.yml"),
}
"""Folder → the globs of its files that are shipped (the package data of ``pyproject.toml``).
``deploy/`` files land at the top of the export (``prometheus/``, ``alertmanager/``), the Grafana
files under ``grafana/``."""

deploy_app = typer.Typer(help="Files to deploy driftscope's monitoring: Prometheus rules, "
                              "Alertmanager routing, Grafana dashboards.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")


def assets_root() -> Path:
    """The folder holding ``deploy/`` and ``grafana/``: ``site-packages/driftscope_llm`` for an
    installed wheel, the repository for a source checkout (``services/`` sits beside both)."""
    return Path(driftscope_llm.services.__file__).resolve().parent.parent


def asset_files(root: Path | None = None) -> dict[str, Path]:
    """Export-relative path → source file, for every shipped file, sorted by path."""
    root = root or assets_root()
    files: dict[str, Path] = {}
    for folder, patterns in ASSETS.items():
        base = root / folder
        prefix = "" if folder == "deploy" else f"{folder}/"
        for pattern in patterns:
            for src in sorted(base.glob(pattern)):
                files[prefix + src.relative_to(base).as_posix()] = src
    return dict(sorted(files.items()))


@deploy_app.command("export")
@friendly_errors
def export_cmd(
    out: Annotated[Path, typer.Argument(help="Directory to write the files into (created).",
                                        file_okay=False)],
    overwrite: Annotated[bool, typer.Option(help="Replace files that already exist.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The written paths as one JSON "
                                                         "object on stdout.")] = False,
) -> None:
    """Copy the Prometheus configuration and rules, the Alertmanager routing and the Grafana
    dashboards into OUT. Existing files are kept unless --overwrite is given."""
    files = asset_files()
    if not files:
        raise ConfigError(f"no deploy files found under {assets_root()}: this installation of "
                          "driftscope is incomplete; reinstall it")
    clashes = [rel for rel in files if (out / rel).exists()]
    if clashes and not overwrite:
        raise ConfigError(f"{out / clashes[0]} exists ({len(clashes)} of the {len(files)} "
                          "files do); pass --overwrite to replace them")
    for rel, src in files.items():
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    if as_json:
        sys.stdout.write(json.dumps({"out": str(out), "files": list(files)}) + "\n")
        return
    # paths are printed whole, never wrapped, so that they can be copied at any width
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"wrote {len(files)} files into {terminal(str(out))}:", markup=False)
    for rel in files:
        console.print(f"  {rel}", markup=False)
    console.print("next: load prometheus/rules/ into Prometheus, merge alertmanager.yml into "
                  "your Alertmanager routes, provision grafana/ (each file's header says how)",
                  markup=False)
