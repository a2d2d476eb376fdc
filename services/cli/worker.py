"""``driftscope worker``: the attribution worker process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.cli.options import (
    LogLevelOpt,
    MaxIdleOpt,
    run_deployable,
)

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_cmd)


@friendly_errors
def worker_cmd(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML settings (models, indexes, services); DRIFTSCOPE_* "
        "variables override it.", exists=True, dir_okay=False)] = None,
    max_idle: MaxIdleOpt = None,
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Run the attribution worker: consume driftscope.anomalies, attribute incidents."""
    from driftscope_llm.services.config import WorkerSettings
    from driftscope_llm.services.deployables import build_worker

    run_deployable(WorkerSettings, build_worker, config, max_idle, log_level, "worker")


# ``python -m driftscope_llm.services.cli.worker`` runs the command on its own
if __name__ == "__main__":
    _app = typer.Typer(pretty_exceptions_enable=False)
    register(_app)
    _app()
