"""Options and start-up shared by the long-running commands (collector, worker), and how every
command opens the state store."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import typer

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry

    from driftscope_llm.services.alerts.notifier import BackgroundNotifier
    from driftscope_llm.services.config import (
        CollectorSettings,
        MetricsSettings,
        RedisSettings,
        WorkerSettings,
    )
    from driftscope_llm.services.deployables import Deployable
    from driftscope_llm.services.store.base import StateStore

__all__ = ["LogLevelOpt", "MaxIdleOpt", "open_command_store", "quiet_transformers",
           "run_deployable", "run_until_stopped", "serve_metrics", "setup_logging"]

S = TypeVar("S", "CollectorSettings", "WorkerSettings")

MaxIdleOpt = Annotated[float | None, typer.Option(
    help="Exit after this many seconds with nothing left to read (batch runs and tests).")]
LogLevelOpt = Annotated[str, typer.Option(help="Python logging level.")]


def setup_logging(level: str) -> None:
    """Timestamped log lines on stderr (stdout stays free for machine-readable output)."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class _Service(Protocol):
    def run(self, *, max_idle_s: float | None = None) -> None: ...

    def stop(self) -> None: ...


def quiet_transformers() -> None:
    """Keep transformers' progress bars and notices off a person's terminal (the command shows
    its own progress); a no-op without the attribution extra."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # the attribution extra is missing: nothing to quiet
        return
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def open_command_store(settings: RedisSettings) -> StateStore:
    """The state store for a command a person typed: a Redis that does not answer is waited
    for a few seconds (said once on stderr), then the command fails with exit code 3."""
    from rich.console import Console

    from driftscope_llm.services.cli.render import escape_text
    from driftscope_llm.services.store.connect import COMMAND_GIVE_UP_S, address
    from driftscope_llm.services.store.connect import open_store as open_state_store

    said: list[bool] = []

    def say_once(error: Exception, delay: float) -> None:
        if not said:
            said.append(True)
            where = escape_text(address(settings))
            Console(stderr=True, highlight=False).print(
                f"waiting up to {COMMAND_GIVE_UP_S:g}s for redis at {where} ({escape_text(error)})")

    return open_state_store(settings, give_up_s=COMMAND_GIVE_UP_S, on_retry=say_once)


def serve_metrics(settings: MetricsSettings, registry: CollectorRegistry,
                  log: logging.Logger) -> WSGIServer:
    """Expose ``registry`` on ``settings.host:port`` (loopback by default); a port that cannot
    be bound is a :class:`ConfigError` (exit 2, one line), like a busy listen port."""
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(settings.port, addr=settings.host, registry=registry)
    except OSError as exc:
        raise _busy(settings, exc) from None
    log.info("metrics on http://%s:%d/metrics", settings.host, server.server_port)
    return server


def check_metrics_port(settings: MetricsSettings) -> None:
    """Refuse a metrics port that cannot be bound *before* any client is built (a Kafka
    producer's I/O thread dying at exit would print a traceback after the one-line error)."""
    import socket

    if settings.port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:
            raise _busy(settings, exc) from None


def _busy(settings: MetricsSettings, exc: OSError) -> Exception:
    from driftscope_llm.services.errors import ConfigError

    return ConfigError(f"cannot serve metrics on {settings.host}:{settings.port}: "
                       f"{exc.strerror or exc}; choose another metrics port",
                       field="metrics.port")


def run_until_stopped(service: _Service, max_idle_s: float | None, server: WSGIServer,
                      notifier: BackgroundNotifier | None) -> None:
    """Run ``service`` until SIGTERM, Ctrl-C or idleness; then stop metrics and webhooks."""
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    try:
        service.run(max_idle_s=max_idle_s)
    except KeyboardInterrupt:
        service.stop()
    finally:
        server.shutdown()
        server.server_close()
        if notifier is not None:
            notifier.close()


def run_deployable(settings_cls: type[S], build: Callable[[S], Deployable[Any]],
                   config: Path | None, max_idle_s: float | None, log_level: str,
                   name: str) -> None:
    """The body of a long-running command: settings read once (file, then ``DRIFTSCOPE_*``),
    the component built by its deployable's builder, metrics served, run until stopped."""
    from driftscope_llm.services.config import load_settings

    setup_logging(log_level)
    s = load_settings(settings_cls, config)
    check_metrics_port(s.metrics)  # a busy port: exit 2 before any client exists
    built = build(s)
    server = serve_metrics(s.metrics, built.registry, logging.getLogger(f"driftscope.{name}"))
    run_until_stopped(built.component, max_idle_s, server, built.notifier)
