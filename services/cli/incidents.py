"""``driftscope incidents list|show|ack|resolve``: the on-call view of incidents in Redis."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.cli.render import (
    Column,
    WideOpt,
    command_console,
    escape_text,
    headline_text,
    print_table,
)

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
IdArg = Annotated[str, typer.Argument(help="Incident id, or a prefix of one that starts no other "
                                           "id.")]
_LIST_COLUMNS = (Column("id", key=True), Column("state"), Column("opened"),
                 Column("model@version", key=True), Column("severity"),
                 Column("headline", key=True), Column("facets", justify="right"),
                 Column("top example"))
_FACET_COLUMNS = (Column("segment", key=True), Column("signal", key=True),
                  Column("detector", key=True), Column("effect", justify="right"),
                  Column("x minimum", justify="right"), Column("first event"),
                  Column("first at"), Column("alarms", justify="right"),
                  Column("exemplars", justify="right"))


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
    wide: WideOpt = False,
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
    rows = []
    for inc in found:
        top = inc.attribution.top(1) if inc.attribution is not None else []
        rows.append([escape_text(v) for v in (
            inc.id, inc.state.value, inc.opened_at.isoformat(timespec="seconds"),
            f"{inc.model}@{inc.model_version}", inc.severity, headline_text(inc),
            str(max(1, len(inc.facets))), top[0].id if top else "")])
    print_table(command_console(wide=wide, highlight=True), f"{len(found)} incidents",
                _LIST_COLUMNS, rows)


@incidents_app.command("show")
@friendly_errors
def show_cmd(
    incident_id: IdArg,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
    config: ConfigOpt = None,
) -> None:
    """One incident with its history and attribution report."""
    store = _store(config)
    inc = store.get_incident(_resolve(store, incident_id))
    if as_json:
        sys.stdout.write(inc.model_dump_json() + "\n")
        return
    _show(command_console(wide=wide), inc, wide=wide)


def _resolve(store: StateStore, typed: str) -> str:
    """The id ``typed`` names (whole, or a unique prefix: ``services.store.lookup``)."""
    from driftscope_llm.services.store.lookup import resolve_incident_id

    return resolve_incident_id(store, typed)


def _show(con: Console, inc: Incident, *, wide: bool = False) -> None:
    """The human view of one incident: header, history, then its attribution report."""
    from driftscope_llm.services.cli.render import print_report

    e = escape_text
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
    print_report(con, inc.attribution, {}, text_width=None if wide else 80)


def _print_facets(con: Console, inc: Incident) -> None:
    """Every facet (segment × signal × detector) that saw the change, headline first."""
    from driftscope_llm.services.store.facets import facet_rows

    e = escape_text
    con.print(f"severity {inc.severity}; {len(inc.facets)} facets (headline: the largest effect "
              "relative to its signal's minimum effect):")
    print_table(con, "facets", _FACET_COLUMNS, [
        [e(row.segment), e(row.signal), e(row.detector),
         f"{row.effect_size:.3g} {e(row.effect_unit)}".strip(), f"{row.relative_effect:.1f}",
         e(row.first_event_id), row.first_at_text, str(row.alarms), str(len(row.exemplars))]
        for row in facet_rows(inc.facets)])


def _move(incident_id: str, target: str, note: str | None, config: Path | None) -> None:
    from driftscope_llm.services.store.lifecycle import move
    from driftscope_llm.services.store.model import IncidentState

    store = _store(config)
    inc = move(store, _resolve(store, incident_id), IncidentState(target), datetime.now(UTC),
               note)
    Console(stderr=True, highlight=False).print(f"{escape_text(inc.id)} is now "
                                                f"{inc.state.value}")


@incidents_app.command("ack")
@friendly_errors
def ack_cmd(
    incident_id: IdArg,
    note: Annotated[str | None, typer.Option(help="Recorded in the history.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Acknowledge an incident (someone is on it)."""
    _move(incident_id, "acknowledged", note, config)


@incidents_app.command("resolve")
@friendly_errors
def resolve_cmd(
    incident_id: IdArg,
    note: Annotated[str | None, typer.Option(help="Recorded in the history.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Resolve an incident."""
    _move(incident_id, "resolved", note, config)


@incidents_app.command("purge")
@friendly_errors
def purge_cmd(
    incident_ids: Annotated[list[str] | None, typer.Argument(
        help="Incident ids, whole (a prefix is refused: purge deletes).")] = None,
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
