"""``driftscope``: the on-call command line.

Heavy imports (torch, onnxruntime, kafka) happen inside the commands that need them, so
``driftscope --help`` answers at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from driftscope_llm.services.cli.collect import register as register_collect
from driftscope_llm.services.cli.demo import register as register_demo
from driftscope_llm.services.cli.deploy import register as register_deploy
from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.cli.extras import guard_commands
from driftscope_llm.services.cli.incident_probes import register_probes
from driftscope_llm.services.cli.incident_report import register_report
from driftscope_llm.services.cli.incidents import incidents_app
from driftscope_llm.services.cli.incidents import register as register_incidents
from driftscope_llm.services.cli.ingest import register as register_ingest
from driftscope_llm.services.cli.models import register as register_models
from driftscope_llm.services.cli.probes import register as register_probe_suites
from driftscope_llm.services.cli.regress import register as register_regress
from driftscope_llm.services.cli.render import escape_text
from driftscope_llm.services.cli.status import register as register_status
from driftscope_llm.services.cli.trace import register as register_trace
from driftscope_llm.services.cli.worker import register as register_worker

__all__ = ["app"]

app = typer.Typer(
    name="driftscope",
    help="Watch production LLM outputs for drift and trace it to the fine-tuning data behind it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Manage the models driftscope itself runs (the output embedder, "
                         "real chat models for attribution and the gate).",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

err_console = Console(stderr=True)


@models_app.command("export-embedder")
@friendly_errors
def export_embedder_cmd(
    out: Annotated[Path | None, typer.Option(help="Target directory (default: cache).")] = None,
    quantize: Annotated[bool, typer.Option(help="Also write an int8-quantised model.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Re-export even if an export exists.")] = False,
) -> None:
    """Export all-MiniLM-L6-v2 to ONNX for the collector's embedding signal.

    Needs the embedder-export extra (torch); the collector itself then runs on onnxruntime only.
    """
    from driftscope_llm.services.collector.embedder import default_embedder_dir, export_embedder

    target = out or default_embedder_dir()
    with err_console.status(f"exporting all-MiniLM-L6-v2 to {target} …"):
        path = export_embedder(target, quantize=quantize, overwrite=overwrite)
    # a path is printed whole on its line (soft wrap), never broken where the terminal ends
    err_console.print(f"[green]embedder ready[/green] at {escape_text(str(path))}",
                      soft_wrap=True)


register_models(models_app)
register_collect(app)
register_demo(app)
register_worker(app)
register_trace(app)
register_incidents(app)
register_report(incidents_app)
register_probes(incidents_app)
register_status(app)
register_ingest(app)
register_regress(app)
register_probe_suites(app)


def _mount_alerts() -> None:
    from driftscope_llm.services.cli.alerts import app as alerts_app

    app.add_typer(alerts_app, name="alerts")


_mount_alerts()


def _mount_optional() -> None:
    try:
        from driftscope_llm.services.cli.attribution import app as attribution_app
    except ImportError:  # the attribution library is not importable in this install
        return
    app.add_typer(attribution_app, name="attribution")


_mount_optional()
register_deploy(app)
# commands that need an extra say so in one line (exit 2) before anything else: cli/extras.py
guard_commands(app)


if __name__ == "__main__":
    app()
