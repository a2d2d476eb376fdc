"""``driftscope status``: is everything up, is anyone behind, what is open, what is alarming.

Reads, never writes: Kafka (reachability; consumer lag per group and partition = log end offset
minus the group's committed offset), Redis (open incidents), Prometheus (the
``driftscope_detector_alarm`` series per model). A service that does not answer is reported as
unreachable with its address; the exit code is 3 when any is unreachable, 1 when incidents are
open or alarms firing, else 0.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from driftscope_llm.services.cli.errors import EXIT_FOUND, EXIT_SERVICE, friendly_errors
from driftscope_llm.services.cli.render import (
    Column,
    WideOpt,
    command_console,
    escape_text,
    print_table,
)

__all__ = ["collect_status", "register"]

def register(app: typer.Typer) -> None:
    app.command("status")(status_cmd)


def _kafka(settings: Any, groups: list[str]) -> dict[str, Any]:
    from dataclasses import asdict

    from driftscope_llm.services.bus.kafka import consumer_lag
    from driftscope_llm.services.errors import BusError

    out: dict[str, Any] = {"address": settings.kafka.bootstrap_servers}
    try:
        lag = consumer_lag(settings.kafka, groups)
    except BusError as exc:
        return {**out, "reachable": False, "error": str(exc)}
    return {**out, "reachable": True,
            "lag": {group: [asdict(row) for row in rows]
                    for group, rows in lag.items()}}


def _redis(settings: Any) -> dict[str, Any]:
    from driftscope_llm.services.store.connect import address, open_store, ping

    r = settings.redis
    error = ping(r)
    if error is not None:
        return {"address": address(r), "reachable": False, "error": error}
    found = open_store(r, give_up_s=None).list_open_incidents(limit=500)
    return {"address": address(r), "reachable": True,
            "open_incidents": [{"id": i.id, "state": i.state.value, "model": i.model,
                                "model_version": i.model_version, "segment": i.segment,
                                "signal": i.signal, "detector": i.detector}
                               for i in found]}


def _prometheus(url: str) -> dict[str, Any]:
    q = urllib.parse.urlencode({"query": "sum by (model) (driftscope_detector_alarm)"})
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query?{q}", timeout=5) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        return {"address": url, "reachable": False, "error": f"{type(exc).__name__}: {exc}"}
    alarms = {row["metric"].get("model", ""): float(row["value"][1])
              for row in body.get("data", {}).get("result", [])}
    return {"address": url, "reachable": True, "alarms_per_model": alarms}


def collect_status(settings: Any, groups: list[str]) -> dict[str, Any]:
    """The status of every service as one JSON-ready dict (module docstring)."""
    return {"kafka": _kafka(settings, groups), "redis": _redis(settings),
            "prometheus": _prometheus(settings.prometheus_url)}


@friendly_errors
def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout, nothing else.")]
    = False,
    group: Annotated[list[str] | None, typer.Option(
        help="Consumer groups to report lag for (repeatable); default: the collector and "
             "worker groups.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML settings (kafka, redis, prometheus_url); DRIFTSCOPE_* "
                               "variables override it.", exists=True, dir_okay=False)] = None,
    wide: WideOpt = False,
) -> None:
    """Services reachable, consumer lag, open incidents and alarms per model.

    Exit code: 0 all well, 1 incidents open or alarms firing, 3 a service unreachable."""
    from driftscope_llm.services.config import CliSettings, load_settings

    settings = load_settings(CliSettings, config)
    st = collect_status(settings, group or ["driftscope-collector", "driftscope-worker"])
    if as_json:
        sys.stdout.write(json.dumps(st) + "\n")
    else:
        _print(command_console(wide=wide), st)
    if not all(s["reachable"] for s in st.values()):
        raise typer.Exit(EXIT_SERVICE)
    alarms = st["prometheus"]["alarms_per_model"]
    if st["redis"]["open_incidents"] or any(v > 0 for v in alarms.values()):
        raise typer.Exit(EXIT_FOUND)


#: Open incidents ``status`` lists; ``driftscope incidents list`` shows them all.
SHOWN_OPEN = 20
_LAG_COLUMNS = (Column("group", key=True), Column("topic", key=True),
                Column("partition", justify="right"), Column("committed", justify="right"),
                Column("end", justify="right"), Column("lag", justify="right"))
_OPEN_COLUMNS = (Column("id", key=True), Column("state"), Column("model@version", key=True),
                 Column("headline", key=True))


def _print(con: Console, st: dict[str, Any]) -> None:
    """Each service's line, the consumer lag, the open incidents and the alarms per model
    (tables of :func:`~driftscope_llm.services.cli.render.print_table`)."""
    e = escape_text
    for name, s in st.items():
        mark = ("[green]up[/green]" if s["reachable"]
                else f"[red]unreachable[/red] {e(s['error'])}")
        con.print(f"{name:<11} {e(s['address'])}  {mark}")
    lag = [[e(grp), *(e(row.get(k, "")) for k in ("topic", "partition", "committed", "end",
                                                   "lag"))]
           for grp, rows in st["kafka"].get("lag", {}).items()
           for row in rows or [{"topic": "(no committed offsets)"}]]
    print_table(con, "consumer lag", _LAG_COLUMNS, lag)
    inc = st["redis"].get("open_incidents", [])
    more = f", the newest {SHOWN_OPEN} shown" if len(inc) > SHOWN_OPEN else ""
    print_table(con, f"{len(inc)} open incidents{more}", _OPEN_COLUMNS, [
        [e(i["id"]), e(i["state"]), e(f"{i['model']}@{i['model_version']}"),
         e(f"{i['signal']} on {i['segment']} ({i['detector']})")] for i in inc[:SHOWN_OPEN]])
    for model, n in st["prometheus"].get("alarms_per_model", {}).items():
        con.print(f"alarms firing on {e(model)}: {n:g}")
