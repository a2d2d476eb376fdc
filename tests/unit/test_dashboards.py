"""Structure of the provisioned Grafana dashboards: every panel has queries, every variable a
query uses exists, the metrics they read are ones driftscope exports, the layout fits."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from driftscope_llm.services.alerts import WebhookMetrics
from driftscope_llm.services.collector.metrics import CollectorMetrics
from tests.grafana_dashboards import (
    BUILTIN_VARS,
    REPO,
    load_dashboards,
    panels,
    queries,
    variables_used,
)

DASHBOARDS = load_dashboards()
STREAM_VARS = ["model", "model_version", "segment"]
# the attribution worker is not written yet; these are the metrics it is specified to export
WORKER_METRICS = {"driftscope_attribution_jobs_total", "driftscope_attribution_job_seconds",
                  "driftscope_attribution_jobs_in_progress"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "le", "inf"}


def _exported() -> set[str]:
    registry = CollectorRegistry()
    CollectorMetrics(registry)
    WebhookMetrics(registry)
    names = {"up"}
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    for base in WORKER_METRICS:
        names.update({base, f"{base}_bucket", f"{base}_sum", f"{base}_count"})
    return names


def _metric_names(expr: str) -> set[str]:
    no_strings = re.sub(r'"[^"]*"', '""', expr)
    no_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", no_strings)
    no_labels = re.sub(r"\{[^}]*\}", "", no_groupings)
    no_ranges = re.sub(r"\[[^\]]*\]", "", no_labels)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", no_ranges))
    return {w for w in words if w.startswith("driftscope_") or w == "up"}


def test_the_three_dashboards_exist_with_unique_uids() -> None:
    assert set(DASHBOARDS) == {"driftscope-overview.json", "driftscope-drift.json",
                               "driftscope-attribution.json"}
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)
    for d in DASHBOARDS.values():
        assert d["title"].startswith("driftscope / ") and "driftscope" in d["tags"]
        assert d["schemaVersion"] >= 36


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_has_queries_on_the_datasource_variable(name: str) -> None:
    d = DASHBOARDS[name]
    ps = list(panels(d))
    assert ps
    for p in ps:
        assert p.get("targets"), f"{name}: panel {p['title']!r} has no queries"
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), p["title"]
        for t in p["targets"]:
            assert t.get("expr", "").strip(), f"{name}: {p['title']!r} {t['refId']} is empty"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_variable_used_is_defined(name: str) -> None:
    d = DASHBOARDS[name]
    defined = {v["name"] for v in d["templating"]["list"]}
    texts = [q.expr for q in queries(name, d)] + [p["title"] for p in panels(d)]
    texts += [str(p.get("repeat", "")) and f"${p['repeat']}" for p in panels(d)]
    texts += [p["datasource"]["uid"] for p in panels(d)]
    used = set().union(*(variables_used(t) for t in texts))
    assert used - BUILTIN_VARS <= defined, f"undefined: {used - BUILTIN_VARS - defined}"
    assert "datasource" in defined


@pytest.mark.parametrize("name", ["driftscope-overview.json", "driftscope-drift.json"])
def test_stream_dashboards_have_model_version_segment_variables(name: str) -> None:
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    for var in STREAM_VARS:
        v = variables[var]
        assert v["type"] == "query" and v["multi"] and v["includeAll"] and v["allValue"] == ".*"
    # each later variable is narrowed by the earlier ones (version by model, segment by both)
    assert "$model" in variables["model_version"]["definition"]
    assert "$model_version" in variables["segment"]["definition"]
    # and every stream query of the dashboard honours all three
    for q in queries(name, DASHBOARDS[name]):
        if q.kind == "panel" and "driftscope_events_consumed" not in q.expr and any(
            m in q.expr for m in ("driftscope_signal", "driftscope_detector",
                                  "driftscope_events_processed", "driftscope_incidents",
                                  "driftscope_anomalies", "driftscope_refusal")
        ):
            assert {"model", "model_version", "segment"} <= variables_used(q.expr), q.where


def test_drift_dashboard_shows_signals_against_reference_and_alarms_as_annotations() -> None:
    d = DASHBOARDS["driftscope-drift.json"]
    exprs = [q.expr for q in queries("drift", d)]
    for metric in ("driftscope_signal_window_value", "driftscope_signal_reference_value",
                   "driftscope_detector_statistic", "driftscope_detector_threshold"):
        assert any(metric in e for e in exprs), metric
    repeated = [p for p in panels(d) if p.get("repeat") == "signal"]
    assert len(repeated) == 2  # window vs reference, statistic vs threshold: one per signal
    annotations = [a for a in d["annotations"]["list"] if not a.get("builtIn")]
    assert any("driftscope_detector_alarm" in a["expr"] and a["enable"] for a in annotations)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_queries_read_only_metrics_driftscope_exports(name: str) -> None:
    exported = _exported()
    for q in queries(name, DASHBOARDS[name]):
        unknown = _metric_names(q.expr) - exported
        assert not unknown, f"{q.where} reads unknown metrics {unknown}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_layout_fits_the_grid_without_overlaps(name: str) -> None:
    d = DASHBOARDS[name]
    ids: list[int] = []
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        ids.append(p["id"])
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        own = {(x, y) for x in range(g["x"], g["x"] + g["w"])
               for y in range(g["y"], g["y"] + g["h"])}
        assert not own & cells, f"{name}: {p['title']!r} overlaps another panel"
        cells |= own
    assert len(set(ids)) == len(ids)


def test_provisioning_points_at_the_dashboards_and_the_datasource() -> None:
    ds = yaml.safe_load((REPO / "grafana/provisioning/datasources/driftscope.yml").read_text())
    [source] = ds["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "driftscope-prometheus"
    boards = yaml.safe_load((REPO / "grafana/provisioning/dashboards/driftscope.yml").read_text())
    [provider] = boards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/driftscope"


def _all_exprs() -> list[Any]:
    return [q for name, d in DASHBOARDS.items() for q in queries(name, d)]


def test_metric_name_extraction_finds_what_it_should() -> None:
    expr = ('histogram_quantile(0.9, sum by (le, model) (rate('
            'driftscope_signal_output_length_chars_bucket{model=~"$model"}[$__rate_interval])))')
    assert _metric_names(expr) == {"driftscope_signal_output_length_chars_bucket"}
    assert len(_all_exprs()) > 30
