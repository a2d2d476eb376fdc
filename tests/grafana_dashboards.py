"""Reading the provisioned Grafana dashboards the way Grafana would, for tests: every query of
every panel, annotation and template variable, with Grafana's variables substituted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS_DIR = REPO / "grafana" / "dashboards"
BUILTIN_VARS = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"}
VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


@dataclass(frozen=True)
class Query:
    dashboard: str  # file name
    where: str  # "panel 'Title' A", "annotation 'Name'", "variable model"
    expr: str
    kind: str  # panel | annotation | variable


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    for p in dashboard.get("panels", []):
        if p.get("type") == "row":
            yield from p.get("panels", [])
        else:
            yield p


def queries(name: str, dashboard: Mapping[str, Any]) -> Iterator[Query]:
    for p in panels(dashboard):
        for t in p.get("targets", []):
            yield Query(name, f"panel {p['title']!r} {t.get('refId')}", t.get("expr", ""), "panel")
    for a in dashboard.get("annotations", {}).get("list", []):
        if a.get("builtIn"):
            continue
        yield Query(name, f"annotation {a['name']!r}", a.get("expr", ""), "annotation")
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            yield Query(name, f"variable {v['name']}", q, "variable")


def variables_used(text: str) -> set[str]:
    return {a or b for a, b in VAR_RE.findall(text)}


LABEL_VALUES_RE = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$", re.S)


def substitute(expr: str, values: Mapping[str, str], *, rate_interval: str = "1m",
               range_: str = "5m") -> str:
    """``expr`` as Grafana sends it: ``$var``/``${var}`` replaced (a multi-value "All" with a
    regex allValue becomes ``.*``), ``$__rate_interval`` and ``$__range`` by durations."""
    builtins = {"__rate_interval": rate_interval, "__interval": "15s", "__range": range_,
                "__range_s": "300", "__interval_ms": "15000"}

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name in builtins:
            return builtins[name]
        return values.get(name, ".*")

    return VAR_RE.sub(repl, expr)


def variable_query_as_promql(expr: str) -> tuple[str, str] | None:
    """``label_values(selector, label)`` → (selector, label) to run as a series query."""
    m = LABEL_VALUES_RE.match(expr.strip())
    return (m.group(1) or "", m.group(2)) if m else None
