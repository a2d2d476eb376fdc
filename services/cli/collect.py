"""``driftscope collector`` and ``driftscope replay``."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from driftscope_llm.services.cli.errors import EXIT_FOUND, EXIT_USAGE, friendly_errors
from driftscope_llm.services.cli.options import (
    LogLevelOpt,
    MaxIdleOpt,
    run_deployable,
)
from driftscope_llm.services.cli.render import (
    INCIDENT_COLUMNS,
    Column,
    WideOpt,
    command_console,
    escape_text,
    incident_row,
    print_table,
)

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
    wide: WideOpt = False,
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
                              caps=StreamCaps(settings.cardinality), clock=settings.clock)
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
        _print_summary(command_console(wide=wide, highlight=True), stats, raised)
    for lineno, msg in stats.first_invalid[:5]:
        err.print(f"[yellow]line {lineno}: invalid event skipped: {escape(msg)}[/yellow]",
                  highlight=False)
    if stats.invalid:
        err.print(f"{sum(stats.invalid.values())} invalid lines: {dict(stats.invalid)}")
    if stats.skipped:  # spans that are not generations (docs/ingestion.md)
        err.print(f"{sum(stats.skipped.values())} spans skipped: {dict(stats.skipped)}")
    if stats.duplicates:  # the same line again (collector/dedupe.py)
        err.print(f"{stats.duplicates} repeated events counted once", highlight=False)
    if stats.clock_skew:  # ts not trusted; line order decided (collector/clock.py)
        err.print(f"{sum(stats.clock_skew.values())} events with an implausible ts, ordered by "
                  f"their line instead: {dict(stats.clock_skew)}")
    if stats.invalid and not stats.valid:  # nothing in the file could be read: an input error
        err.print("no valid record in the file")
        raise typer.Exit(EXIT_USAGE)
    if fail_on_drift and raised:
        raise typer.Exit(EXIT_FOUND)


_ANOMALY_COLUMNS = (Column("event"), Column("model@version", key=True),
                   Column("segment", key=True), Column("signal", key=True), Column("detector"),
                   Column("statistic", justify="right"), Column("threshold", justify="right"),
                   Column("effect", justify="right"), Column("incident", key=True))


def _print_summary(console: Console, stats: ReplayStats, raised: list[RaisedAnomaly]) -> None:
    """The counts, every anomaly in the order raised, then each incident as it ended (tables
    of :func:`~driftscope_llm.services.cli.render.print_table`: key columns never cut)."""
    console.print(f"{stats.valid} valid events replayed, {sum(stats.invalid.values())} invalid, "
                  f"{len(raised)} anomalies.")
    if not raised:
        return
    e = escape_text
    rows = []
    for r in raised:
        d = r.to_dict()
        rows.append([e(d["event_id"]), e(f"{d['model']}@{d['model_version']}"),
                     e(d["segment"]), e(d["signal"]), e(d["detector"]), f"{d['statistic']:.4g}",
                     f"{d['threshold']:.4g}", f"{d['effect_size']:.3g}",
                     f"{e(d['incident_id'])} ({d['incident']})"])
    print_table(console, "anomalies, in the order raised", _ANOMALY_COLUMNS, rows)
    latest = {r.incident.id: r.incident for r in raised}  # each incident as it ended
    print_table(console, f"{len(latest)} incident{'s' if len(latest) != 1 else ''}",
                INCIDENT_COLUMNS, [incident_row(inc) for inc in latest.values()])


@friendly_errors
def collector_cmd(
    config: ConfigOpt = None,
    max_idle: MaxIdleOpt = None,
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Run the collector: consume llm.outputs, detect drift, export metrics, open incidents."""
    from driftscope_llm.services.config import CollectorSettings
    from driftscope_llm.services.deployables import build_collector

    run_deployable(CollectorSettings, build_collector, config, max_idle, log_level, "collector")
