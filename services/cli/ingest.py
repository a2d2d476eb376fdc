"""``driftscope ingest``: the OTLP/HTTP receiver, OpenTelemetry traces in, OutputEvents to Kafka.

Point any OTLP/HTTP trace exporter here (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=
http://HOST:4318/v1/traces``); GenAI spans become OutputEvents on the collector's input topic,
keyed by model, and the collector watches them like any other event.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.cli.options import LogLevelOpt, serve_metrics, setup_logging
from driftscope_llm.services.config import IngestServiceSettings

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_cmd)


@friendly_errors
def ingest_cmd(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML settings (receiver, kafka, topics, ingest); DRIFTSCOPE_* "
        "variables override it.", exists=True, dir_okay=False)] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 4318, OTLP/HTTP's).")] = None,
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Receive OTLP/HTTP traces (POST /v1/traces) and logs (POST /v1/logs), and produce their
    GenAI spans to Kafka, with content sent as log events put back on its span.

    Protobuf and JSON bodies, gzip, partial success for spans that cannot be mapped (they go to
    the dead-letter topic). Set DRIFTSCOPE_RECEIVER__BEARER_TOKEN to require a bearer token.
    """
    from prometheus_client import CollectorRegistry

    from driftscope_llm.services.config import load_settings
    from driftscope_llm.services.deployables import build_otlp_receiver
    from driftscope_llm.services.errors import DriftscopeError

    setup_logging(log_level)
    s = load_settings(IngestServiceSettings, config)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    s = s.model_copy(update={"receiver": s.receiver.model_copy(update=overrides)})
    registry = CollectorRegistry()
    server = serve_metrics(s.metrics, registry, logging.getLogger("driftscope.otlp_receiver"))
    try:
        built = build_otlp_receiver(s, registry=registry)  # BusError: Kafka unreachable
    except BaseException as exc:
        server.shutdown()
        server.server_close()
        if isinstance(exc, OSError) and not isinstance(exc, DriftscopeError):  # port taken
            raise typer.BadParameter(
                f"cannot listen on {s.receiver.host}:{s.receiver.port}: "
                f"{exc.strerror}; choose another --port") from None
        raise
    receiver = built.component
    Console(stderr=True).print(
        f"OTLP/HTTP receiver on [bold]{escape(receiver.url)}[/bold] → Kafka topic "
        f"{escape(s.topics.outputs)} (dead letters: {escape(s.topics.dead_letter)})",
        highlight=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    receiver.start()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
        server.shutdown()
        server.server_close()
        built.close()  # waits for the last acks
