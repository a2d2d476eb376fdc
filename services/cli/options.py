"""Options and start-up shared by the long-running commands (collector, worker)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

__all__ = ["LogLevelOpt", "MaxIdleOpt", "setup_logging"]

MaxIdleOpt = Annotated[float | None, typer.Option(
    help="Exit after this many seconds with nothing left to read (batch runs and tests).")]
LogLevelOpt = Annotated[str, typer.Option(help="Python logging level.")]


def setup_logging(level: str) -> None:
    """Timestamped log lines on stderr (stdout stays free for machine-readable output)."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
