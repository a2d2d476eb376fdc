"""The shipped Prometheus rules and Alertmanager config, checked by the tools that load them.

``promtool check rules`` (syntax, PromQL), ``promtool test rules`` (the unit tests in
``deploy/prometheus/tests``: each alert fires on the series it should, when it should, with the
labels and annotations Alertmanager routes and shows), ``amtool check-config`` and
``amtool config routes test`` (which receiver each kind of alert reaches). The tools come with
the Debian packages ``prometheus`` and ``prometheus-alertmanager``; a missing tool fails.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
AM_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian packages prometheus, "
                    "prometheus-alertmanager)")
    return path


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def test_rule_files_are_valid() -> None:
    assert len(RULES) >= 2
    done = run(tool("promtool"), "check", "rules", *map(str, RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    done = run(tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_unit_tested_and_routable() -> None:
    alerts = {r["alert"]: r for f in RULES for g in yaml.safe_load(f.read_text())["groups"]
              for r in g["rules"] if "alert" in r}
    tested = {t["alertname"] for f in RULE_TESTS for case in yaml.safe_load(f.read_text())["tests"]
              for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert set(alerts) <= tested, f"alerts never seen firing in a rule test: {set(alerts) - tested}"
    for name, rule in alerts.items():
        assert rule["labels"]["service"] == "driftscope", name
        # a static severity, or (drift incidents) the incident's own, from the series' label
        assert rule["labels"].get("severity") in {"page", "warning", "info"} or (
            "severity" not in rule["labels"] and "(model, model_version, severity)"
            in rule["expr"]), name
        assert {"summary", "description"} <= set(rule["annotations"]), name


def test_rule_tests_catch_a_broken_threshold(tmp_path: Path) -> None:
    """The rule tests can fail: with the dead-letter threshold raised to 50% they must."""
    (tmp_path / "rules").mkdir()
    for f in RULES:
        text = f.read_text().replace("ratio_rate5m > 0.05", "ratio_rate5m > 0.5")
        (tmp_path / "rules" / f.name).write_text(text)
    (tmp_path / "tests").mkdir()
    for f in RULE_TESTS:
        shutil.copy(f, tmp_path / "tests" / f.name)
    done = run(tool("promtool"), "test", "rules", *[str(tmp_path / "tests" / f.name)
                                                     for f in RULE_TESTS])
    assert done.returncode == 1  # promtool: a failed rule test
    assert "DriftscopeDeadLetterRateHigh" in done.stdout + done.stderr


def test_alertmanager_config_is_valid() -> None:
    done = run(tool("amtool"), "check-config", str(AM_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["service=driftscope", "severity=warning", "alertname=DriftscopeDriftAlarm"],
         "driftscope"),
        (["service=driftscope", "severity=page", "alertname=DriftscopeCollectorDown"],
         "driftscope"),
        (["service=driftscope", "severity=critical", "alertname=DriftscopeDriftIncident",
          "model=chat", "model_version=v7"], "driftscope"),
        (["service=payments", "severity=page", "alertname=Other"], "blackhole"),
    ],
)
def test_alertmanager_routes_driftscope_alerts_to_the_receiver(labels: list[str],
                                                               receiver: str) -> None:
    done = run(tool("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == receiver


def test_drift_alerts_are_grouped_per_incident() -> None:
    """The collector folds a model version's facets into one incident; Alertmanager groups its
    drift alerts the same way (one notification group per model version)."""
    done = run(tool("amtool"), "config", "routes", "show", f"--config.file={AM_CONFIG}")
    assert done.returncode == 0, done.stdout + done.stderr
    tree = yaml.safe_load(AM_CONFIG.read_text())["route"]
    drift = [r for top in tree["routes"] for r in top.get("routes", [])
             if any("DriftscopeDrift" in m for m in r.get("matchers", []))]
    assert [r["group_by"] for r in drift] == [["model", "model_version"]]
    assert 'alertname=~"DriftscopeDrift(Incident|Alarm)"' in done.stdout  # amtool's own tree


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each panel, annotation and variable query, with Grafana's variables substituted, parses
    (promtool checks it as a recording rule's expression). Whether it returns data is
    test_dashboard_queries' job, against a Prometheus that scraped a live collector."""
    from tests.grafana_dashboards import (
        load_dashboards,
        queries,
        substitute,
        variable_query_as_promql,
    )

    rules = []
    for name, dashboard in load_dashboards().items():
        for q in queries(name, dashboard):
            expr = substitute(q.expr, {})
            if q.kind == "variable":
                parsed = variable_query_as_promql(expr)
                assert parsed is not None, f"{name} {q.where}: not label_values(...): {q.expr}"
                expr = parsed[0]
            rules.append({"record": f"dashboard:query_{len(rules)}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = run(tool("promtool"), "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
