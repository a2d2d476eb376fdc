"""``driftscope worker``: the attribution worker process."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated, cast

import typer

from services.cli.errors import friendly_errors
from services.cli.options import LogLevelOpt, MaxIdleOpt, setup_logging

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
    from prometheus_client import CollectorRegistry, start_http_server

    from services.alerts.build import build_notifier
    from services.config import load_settings
    from services.store.base import StateStore
    from services.store.redis_store import RedisStore, connect
    from services.store.retry import RetryingStore
    from services.worker.job import Attributor
    from services.worker.metrics import WorkerMetrics
    from services.worker.service import Worker
    from services.worker.settings import AttributionWorkerSettings

    setup_logging(log_level)
    s = load_settings(AttributionWorkerSettings, config)
    client = connect(s.redis)
    store = cast(StateStore, RetryingStore(RedisStore(client, key_prefix=s.redis.key_prefix)))
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    server, _thread = start_http_server(s.metrics.port, addr=s.metrics.host, registry=registry)
    log = logging.getLogger("driftscope.worker")
    log.info("metrics on http://%s:%d/metrics", s.metrics.host, server.server_port)
    notifier = build_notifier(s.webhooks, client, registry)
    if not s.models:
        log.warning("no model targets configured: every incident will fail with no_target")
    worker = Worker(store, client, Attributor(device=s.device), metrics, s.kafka, s.topics,
                    s.models, group_id=s.group_id, lease_ttl_s=s.lease_ttl_s,
                    key_prefix=s.redis.key_prefix, session_timeout_s=s.session_timeout_s,
                    notifier=notifier)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    try:
        worker.run(max_idle_s=max_idle)
    except KeyboardInterrupt:
        worker.stop()
    finally:
        server.shutdown()
        if notifier is not None:
            notifier.close()


if __name__ == "__main__":  # ``python -m services.cli.worker`` runs the command on its own
    _app = typer.Typer(pretty_exceptions_enable=False)
    register(_app)
    _app()
