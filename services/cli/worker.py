"""``driftscope worker``: the attribution worker process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.cli.options import (
    LogLevelOpt,
    MaxIdleOpt,
    open_service_store,
    run_until_stopped,
    serve_metrics,
    setup_logging,
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
    from prometheus_client import CollectorRegistry

    from driftscope_llm.services.alerts.build import build_notifier
    from driftscope_llm.services.bus.kafka import KafkaBus
    from driftscope_llm.services.bus.preflight import check_kafka_auth
    from driftscope_llm.services.config import WorkerSettings, load_settings
    from driftscope_llm.services.worker.job import Attributor
    from driftscope_llm.services.worker.metrics import WorkerMetrics
    from driftscope_llm.services.worker.service import Worker, consumer_options

    setup_logging(log_level)
    s = load_settings(WorkerSettings, config)
    check_kafka_auth(s.kafka)  # wrong SASL credentials: a clear error now, not a timeout later
    client, store = open_service_store(s.redis)
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    log = logging.getLogger("driftscope.worker")
    server = serve_metrics(s.metrics, registry, log)
    notifier = build_notifier(s.webhooks, client, registry)
    if not s.models:
        log.warning("no model targets configured: every incident will fail with no_target")
    bus = KafkaBus(s.kafka, group_id=s.group_id, max_poll_records=1,
                   consumer_options=consumer_options(s.models, lease_ttl_s=s.lease_ttl_s,
                                                     session_timeout_s=s.session_timeout_s))
    # settle: attribute an incident once it stops gaining facets (5 s quiet, 60 s at most)
    worker = Worker(store, Attributor(device=s.device), metrics, bus, s.topics, s.models,
                    lease_ttl_s=s.lease_ttl_s, notifier=notifier, settle_s=5.0)
    run_until_stopped(worker, max_idle, server, notifier)


if __name__ == "__main__":  # ``python -m driftscope_llm.services.cli.worker`` runs the command on its own
    _app = typer.Typer(pretty_exceptions_enable=False)
    register(_app)
    _app()
