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
from driftscope_llm.services.cli.render import escape_text

if TYPE_CHECKING:
    from driftscope_llm.services.store.base import StateStore
    from driftscope_llm.services.store.model import Incident

__all__ = ["register"]

incidents_app = typer.Typer(help="List, inspect, acknowledge and resolve drift incidents.",
                            no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML settings (redis); DRIFTSCOPE_* variables override it.",
    exists=True, dir_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout, nothing else.")]


def register(app: typer.Typer) -> None:
    app.add_typer(incidents_app, name="incidents")


def _store(config: Path | None) -> StateStore:
    """The store named by the CLI settings; a person waits a few seconds, not minutes."""
    from driftscope_llm.services.cli.options import open_command_store
    from driftscope_llm.services.config import CliSettings, load_settings

    s = load_settings(CliSettings, config)
    return open_command_store(s.redis)


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
    for col in ("id", "state", "opened", "model@version", "severity", "headline", "facets",
                "top example"):
        table.add_column(col)
    for inc in found:
        top = inc.attribution.top(1) if inc.attribution is not None else []
        table.add_row(*(escape_text(v) for v in (
            inc.id, inc.state.value, inc.opened_at.isoformat(timespec="seconds"),
            f"{inc.model}@{inc.model_version}", inc.severity,
            f"{inc.signal} on {inc.segment} ({inc.detector})", str(max(1, len(inc.facets))),
            top[0].id if top else "")))
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
    _show(inc)


def _show(inc: Incident) -> None:
    """The human view of one incident: header, history, then its attribution report."""
    from driftscope_llm.services.cli.render import print_report

    e = escape_text
    con = Console(highlight=False)
    con.print(f"[bold]{e(inc.id)}[/bold]  {inc.state.value}  {e(inc.model)}@"
              f"{e(inc.model_version)} segment={e(inc.segment)} signal={e(inc.signal)} "
              f"detector={e(inc.detector)}")
    con.print(f"statistic {inc.statistic:.4g} (threshold {inc.threshold:.4g}), effect "
              f"{inc.effect_size:.3g}, {len(inc.exemplars)} exemplars, {inc.updates} updates")
    for h in inc.state_history:
        con.print(f"  {e(h['at'])}  {e(h['state'])}  {e(h.get('reason', ''))}")
    if inc.facets:
        _print_facets(con, inc)
    if inc.attribution is None:
        con.print("not attributed yet")
        return
    print_report(con, inc.attribution, {})


def _print_facets(con: Console, inc: Incident) -> None:
    """Every facet (segment × signal × detector) that saw the change, headline first."""
    from driftscope_llm.services.store.facets import facet_rows

    e = escape_text
    con.print(f"severity {inc.severity}; {len(inc.facets)} facets (headline: the largest effect "
              "relative to its signal's minimum effect):")
    table = Table(title="facets")
    for col in ("segment", "signal", "detector", "effect", "x minimum", "first event",
                "first at", "alarms", "exemplars"):
        table.add_column(col)
    for row in facet_rows(inc.facets):
        table.add_row(e(row.segment), e(row.signal), e(row.detector),
                      f"{row.effect_size:.3g} {e(row.effect_unit)}".strip(),
                      f"{row.relative_effect:.1f}", e(row.first_event_id),
                      row.first_at_text, str(row.alarms), str(len(row.exemplars)))
    con.print(table)


def _move(incident_id: str, target: str, note: str | None, config: Path | None) -> None:
    from driftscope_llm.services.store.lifecycle import move
    from driftscope_llm.services.store.model import IncidentState

    inc = move(_store(config), incident_id, IncidentState(target), datetime.now(UTC), note)
    Console(stderr=True, highlight=False).print(f"{escape_text(inc.id)} is now "
                                                f"{inc.state.value}")


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
    for incident_id in incident_ids or []:  # an unknown id is exit 4 and deletes nothing
        store.get_incident(incident_id)
    n = store.delete_incidents(list(incident_ids or []), opened_before=_when(before))
    Console(stderr=True).print(f"purged {n} incidents")
