"""``driftscope collector`` and ``driftscope replay``."""

from __future__ import annotations

import json
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from driftscope_llm.services.cli.errors import EXIT_FOUND, friendly_errors
from driftscope_llm.services.cli.options import (
    LogLevelOpt,
    MaxIdleOpt,
    open_service_store,
    run_until_stopped,
    serve_metrics,
    setup_logging,
)
from driftscope_llm.services.cli.render import escape_text

if TYPE_CHECKING:
    from driftscope_llm.services.collector.pipeline import RaisedAnomaly
    from driftscope_llm.services.collector.replay import ReplayStats

__all__ = ["register"]

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings (drift detectors, signals, segments, "
                 "embedder, services); DRIFTSCOPE_* variables override it.",
                 exists=True, dir_okay=False),
]


class ReplayFormat(StrEnum):
    """Line-based input formats ``replay --format`` accepts (docs/ingestion.md)."""

    auto = "auto"
    driftscope = "driftscope"
    openai = "openai"
    otlp_json = "otlp_json"


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_cmd)
    app.command("collector")(collector_cmd)


@friendly_errors
def replay_cmd(
    events: Annotated[Path, typer.Argument(
        help="Records, one a line: OutputEvents, OpenAI chat completions or OTLP JSON trace "
             "exports.", exists=True, dir_okay=False)],
    config: ConfigOpt = None,
    input_format: Annotated[ReplayFormat, typer.Option(
        "--format", help="The lines' format; auto detects each line's own.")] = ReplayFormat.auto,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON anomaly per line on stdout, "
                                          "nothing else.")] = False,
    embed: Annotated[bool | None, typer.Option(
        "--embed/--no-embed",
        help="The embedding signal (ONNX). Default: on wherever the embedder is available "
             "(exported once on first use, progress on stderr); --embed makes it required, "
             "--no-embed turns it off.")] = None,
    fail_on_drift: Annotated[bool, typer.Option(help="Exit 1 if any anomaly.")] = False,
) -> None:
    """Run the collector's pipeline over a file, with no services (embedded mode)."""
    from driftscope_llm.services.collector.build import build_pipeline
    from driftscope_llm.services.collector.cardinality import StreamCaps
    from driftscope_llm.services.collector.replay import ReplayStats, replay_file
    from driftscope_llm.services.config import CollectorSettings, load_settings
    from driftscope_llm.services.store import MemoryStore

    settings = load_settings(CollectorSettings, config)
    embedder = settings.embedder
    if embed is not None:
        embedder = embedder.model_copy(update={"enabled": embed, "required": embed})
    pipeline = build_pipeline(settings.drift, settings.signals, settings.segments, embedder,
                              MemoryStore(), cooldown_s=settings.cooldown_s,
                              redaction=settings.redaction,
                              caps=StreamCaps(settings.cardinality))
    stats = ReplayStats()
    err = Console(stderr=True)
    total_bytes = events.stat().st_size
    raised = []
    if as_json:
        for r in replay_file(events, pipeline, stats, max_event_bytes=settings.max_event_bytes,
                             fmt=input_format.value, ingest=settings.ingest):
            sys.stdout.write(json.dumps(r.to_dict()) + "\n")
            raised.append(r)
    else:
        progress = Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("events"), TimeElapsedColumn(), console=err,
                            transient=True)
        approx = max(1, total_bytes // 400)
        with progress:
            task = progress.add_task("replay", total=approx)
            for r in replay_file(events, pipeline, stats, max_event_bytes=settings.max_event_bytes,
                                 fmt=input_format.value, ingest=settings.ingest,
                                 on_progress=lambda n: progress.advance(task, n)):
                raised.append(r)
        _print_summary(Console(), stats, raised)
    for lineno, msg in stats.first_invalid[:5]:
        err.print(f"[yellow]line {lineno}: invalid event skipped: {escape(msg)}[/yellow]",
                  highlight=False)
    if stats.invalid:
        err.print(f"{sum(stats.invalid.values())} invalid lines: {dict(stats.invalid)}")
    if stats.skipped:  # spans that are not generations (docs/ingestion.md)
        err.print(f"{sum(stats.skipped.values())} spans skipped: {dict(stats.skipped)}")
    if fail_on_drift and raised:
        raise typer.Exit(EXIT_FOUND)


def _print_summary(console: Console, stats: ReplayStats, raised: list[RaisedAnomaly]) -> None:
    console.print(f"{stats.valid} valid events replayed, {sum(stats.invalid.values())} invalid, "
                  f"{len(raised)} anomalies.")
    if not raised:
        return
    table = Table(title="anomalies, in the order raised")
    for col in ("event", "model@version", "segment", "signal", "detector", "statistic",
                "threshold", "effect", "incident"):
        table.add_column(col)
    for r in raised:
        d = r.to_dict()
        e = escape_text
        table.add_row(e(d["event_id"]), f"{e(d['model'])}@{e(d['model_version'])}",
                      e(d["segment"]), e(d["signal"]), e(d["detector"]), f"{d['statistic']:.4g}",
                      f"{d['threshold']:.4g}", f"{d['effect_size']:.3g}",
                      f"{d['incident_id']} ({d['incident']})")
    console.print(table)
    latest = {r.incident.id: r.incident for r in raised}  # each incident as it ended
    console.print(f"{len(latest)} incident{'s' if len(latest) != 1 else ''}:")
    for inc in latest.values():
        top = max(inc.facets, key=lambda f: f.relative_effect, default=None)
        ratio = f" = {top.relative_effect:.1f}x its minimum" if top is not None else ""
        console.print(f"  {escape_text(inc.id)} {inc.severity}: {escape_text(inc.signal)} on "
                      f"{escape_text(inc.segment)} ({escape_text(inc.detector)}), effect "
                      f"{inc.effect_size:.3g}{ratio}; {len(inc.facets)} facets "
                      f"({escape_text(inc.model)}@{escape_text(inc.model_version)})",
                      highlight=False)


@friendly_errors
def collector_cmd(
    config: ConfigOpt = None,
    max_idle: MaxIdleOpt = None,
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Run the collector: consume llm.outputs, detect drift, export metrics, open incidents."""
    from prometheus_client import CollectorRegistry

    from driftscope_llm.services.alerts.build import build_notifier
    from driftscope_llm.services.bus.kafka import KafkaBus
    from driftscope_llm.services.bus.preflight import check_kafka_auth
    from driftscope_llm.services.collector.build import build_pipeline
    from driftscope_llm.services.collector.cardinality import StreamCaps
    from driftscope_llm.services.collector.metrics import CollectorMetrics
    from driftscope_llm.services.collector.service import Collector
    from driftscope_llm.services.config import CollectorSettings, load_settings
    from driftscope_llm.services.ingest.decode import IngestMetrics, RecordDecoder

    setup_logging(log_level)
    s = load_settings(CollectorSettings, config)
    check_kafka_auth(s.kafka)  # wrong SASL credentials: a clear error now, not a timeout later
    client, store = open_service_store(s.redis)
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)
    server = serve_metrics(s.metrics, registry, logging.getLogger("driftscope.collector"))
    caps = StreamCaps(s.cardinality,
                      on_fold=lambda dimension: metrics.streams_folded.labels(dimension).inc())
    pipeline = build_pipeline(s.drift, s.signals, s.segments, s.embedder, store,
                              cooldown_s=s.cooldown_s, redaction=s.redaction, caps=caps)
    notifier = build_notifier(s.webhooks, client, registry)
    bus = KafkaBus(s.kafka, group_id=s.group_id, consumer=s.consumer)
    collector = Collector(pipeline, store, metrics, bus, s.topics,
                          max_event_bytes=s.max_event_bytes,
                          checkpoint_every=s.checkpoint_every,
                          notify=notifier.submit if notifier is not None else None,
                          decoder=RecordDecoder(s.ingest, max_event_bytes=s.max_event_bytes,
                                                metrics=IngestMetrics(registry)))
    run_until_stopped(collector, max_idle, server, notifier)
