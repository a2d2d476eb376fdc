"""``driftscope alerts …``: the alert receiver as a deployable, and a look at the dead letters.

Mounted into the main CLI as ``driftscope alerts`` (``app``), and runnable on its own as
``python -m driftscope_llm.services.alerts`` (what ``deploy/compose.yaml`` and ``deploy/k8s`` run).

Settings (:class:`~driftscope_llm.services.config.AlertsSettings`, read once here): a YAML file
(``--config``) overridden by ``DRIFTSCOPE_*`` variables, for example
``DRIFTSCOPE_RECEIVER__BEARER_TOKEN``, ``DRIFTSCOPE_REDIS__URL``,
``DRIFTSCOPE_WEBHOOKS__ENDPOINTS='[{"name": "ops", "url": "...", "secret": "..."}]'``.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.config import AlertsSettings, load_settings
from driftscope_llm.services.errors import ConfigError, DriftscopeError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = ["app"]

app = typer.Typer(help="The Alertmanager-compatible receiver and webhook dead letters.",
                  no_args_is_help=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings; DRIFTSCOPE_* variables override it.",
                 exists=True, dir_okay=False),
]


@app.command("receive")
@friendly_errors
def receive_cmd(
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option(help="Python logging level.")] = "INFO",
) -> None:
    """Serve the Alertmanager webhook; relay accepted alerts to the configured webhooks."""
    from prometheus_client import CollectorRegistry

    from driftscope_llm.services.cli.options import serve_metrics
    from driftscope_llm.services.deployables import build_alert_receiver

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s = load_settings(AlertsSettings, config)
    registry = CollectorRegistry()
    server = serve_metrics(s.metrics, registry, logging.getLogger("driftscope.alerts"))
    try:
        built = build_alert_receiver(s, registry=registry)
    except DriftscopeError:
        _close(server)
        raise
    except OSError as exc:  # the port is taken (a missing receiver was refused before)
        _close(server)
        where = f"{s.receiver.host}:{s.receiver.port}" if s.receiver else "the receiver port"
        raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc}",
                          field="receiver.port") from None
    except BaseException:
        _close(server)
        raise
    receiver = built.component.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logging.getLogger("driftscope.alerts").info(
        "alert receiver on %s, relaying to %d endpoint(s)", receiver.url,
        len(s.webhooks.endpoints))
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        receiver.close()
        built.close()  # the relay delivers what it holds
        _close(server)


def _close(server: WSGIServer) -> None:
    """Stop the metrics server and release its listening socket (shutdown alone leaves the
    socket open until garbage collection)."""
    server.shutdown()
    server.server_close()


@app.command("dead-letters")
@friendly_errors
def dead_letters_cmd(
    config: ConfigOpt = None,
    count: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """Print the newest dead-letter records, one JSON object a line."""
    from driftscope_llm.services.store.connect import open_dead_letters

    s = load_settings(AlertsSettings, config)
    sink = open_dead_letters(s.redis, key=s.webhooks.dead_letter_key)
    records, unreadable = sink.read_all(count)
    for record in records:
        sys.stdout.write(json.dumps(record.model_dump(mode="json")) + "\n")
    if unreadable:
        n = len(unreadable)
        sys.stderr.write(f"warning: skipped {n} unreadable entr{'y' if n == 1 else 'ies'} of "
                         f"{s.webhooks.dead_letter_key} (not dead-letter records)\n")
