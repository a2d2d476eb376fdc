"""``driftscope incidents list|show|ack|resolve``: the on-call view of incidents in Redis."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from driftscope_llm.services.cli.errors import friendly_errors

if TYPE_CHECKING:
    from driftscope_llm.services.store.redis_store import RedisStore

__all__ = ["register"]

incidents_app = typer.Typer(help="List, inspect, acknowledge and resolve drift incidents.",
                            no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML settings (redis); DRIFTSCOPE_* variables override it.",
    exists=True, dir_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout, nothing else.")]


def register(app: typer.Typer) -> None:
    app.add_typer(incidents_app, name="incidents")


def _store(config: Path | None) -> RedisStore:

    from driftscope_llm.services.config import CliSettings, load_settings
    from driftscope_llm.services.store.redis_store import RedisStore, connect

    s = load_settings(CliSettings, config)
    client = connect(s.redis)
    return RedisStore(client, key_prefix=s.redis.key_prefix, retention_s=s.redis.retention_s)


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@incidents_app.command("list")
@friendly_errors
def list_cmd(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    state: Annotated[str | None, typer.Option(help="Only this state (open, attributing, "
                                              "attributed, failed, acknowledged, resolved).")]
    = None,
    since: Annotated[str | None, typer.Option(help="Opened at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Opened at or before (ISO 8601).")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Incidents, newest first."""
    from driftscope_llm.services.store.model import IncidentState

    try:
        st = IncidentState(state) if state else None
    except ValueError:
        raise typer.BadParameter(f"unknown state {state!r}", param_hint="--state") from None
    found = _store(config).list_incidents(model=model, state=st, since=_when(since),
                                          until=_when(until), limit=limit)
    if as_json:
        for inc in found:
            sys.stdout.write(inc.model_dump_json(exclude={"attribution"}) + "\n")
        return
    table = Table(title=f"{len(found)} incidents")
    for col in ("id", "state", "opened", "model@version", "segment", "signal", "detector",
                "top example"):
        table.add_column(col)
    for inc in found:
        top = (inc.attribution or {}).get("aggregate") or [{}]
        table.add_row(inc.id, inc.state.value, inc.opened_at.isoformat(timespec="seconds"),
                      f"{inc.model}@{inc.model_version}", inc.segment, inc.signal, inc.detector,
                      str(top[0].get("id", "")))
    Console().print(table)


@incidents_app.command("show")
@friendly_errors
def show_cmd(
    incident_id: Annotated[str, typer.Argument(help="Incident id.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """One incident with its history and attribution report."""
    inc = _store(config).get_incident(incident_id)
    if as_json:
        sys.stdout.write(inc.model_dump_json() + "\n")
        return
    con = Console()
    con.print(f"[bold]{inc.id}[/bold]  {inc.state.value}  {inc.model}@{inc.model_version} "
              f"segment={inc.segment} signal={inc.signal} detector={inc.detector}")
    con.print(f"statistic {inc.statistic:.4g} (threshold {inc.threshold:.4g}), effect "
              f"{inc.effect_size:.3g}, {len(inc.exemplars)} exemplars, {inc.updates} updates")
    for h in inc.state_history:
        con.print(f"  {h['at']}  {h['state']}  {h.get('reason', '')}", highlight=False)
    report = inc.attribution
    if report is None:
        return
    if report.get("status") != "attributed":
        con.print(f"[red]attribution failed[/red]: {report.get('reason')}", highlight=False)
        return
    table = Table(title=f"training examples most responsible ({report['primary_method']}, "
                        "mean reciprocal rank over exemplars)")
    for col in ("rank", "id", "mrr", "hits", "best rank"):
        table.add_column(col)
    for row in report["aggregate"]:
        table.add_row(str(row["rank"]), row["id"], f"{row['mrr']:.3f}", str(row["hits"]),
                      str(row["best_rank"]))
    con.print(table)
    agree = report.get("agreement", {})
    if agree.get("mean_overlap") is not None:
        con.print(f"method agreement: overlap@k {agree['mean_overlap']:.2f}")


def _move(incident_id: str, target: str, note: str | None, config: Path | None) -> None:
    from driftscope_llm.services.store.model import IncidentState
    from driftscope_llm.services.worker.lifecycle import advance

    store = _store(config)
    inc = store.get_incident(incident_id)
    advance(inc, IncidentState(target), datetime.now(UTC), note)
    store.save_incident(inc)
    Console(stderr=True).print(f"{inc.id} is now {inc.state.value}")


@incidents_app.command("ack")
@friendly_errors
def ack_cmd(
    incident_id: Annotated[str, typer.Argument(help="Incident id.")],
    note: Annotated[str | None, typer.Option(help="Recorded in the history.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Acknowledge an incident (someone is on it)."""
    _move(incident_id, "acknowledged", note, config)


@incidents_app.command("resolve")
@friendly_errors
def resolve_cmd(
    incident_id: Annotated[str, typer.Argument(help="Incident id.")],
    note: Annotated[str | None, typer.Option(help="Recorded in the history.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Resolve an incident."""
    _move(incident_id, "resolved", note, config)


@incidents_app.command("purge")
@friendly_errors
def purge_cmd(
    incident_ids: Annotated[list[str] | None, typer.Argument(help="Incident ids.")] = None,
    before: Annotated[str | None, typer.Option(help="Every incident opened before this time "
                                               "(ISO 8601).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Delete incidents (records, exemplars, reports) now, by id or opened before a time."""
    if not incident_ids and before is None:
        raise typer.BadParameter("name incident ids or --before")
    store = _store(config)
    ids = list(incident_ids or [])
    cutoff = _when(before)
    if cutoff is not None:
        raw = store.r.zrangebyscore(f"{store.p}incidents", "-inf", f"({cutoff.timestamp()}")
        ids.extend(i.decode() for i in raw)
    n = store.delete_incidents(sorted(set(ids)))
    Console(stderr=True).print(f"purged {n} incidents")
