"""``driftscope demo`` on its defaults, through the real app: what ``make demo`` runs.

One run (about a minute on two cores; slow tier) with no option but ``--out``, checked against
what README's demo section promises: the v2 rollout becomes **one** incident whose headline is
the refusal rise on ``route=billing``; the attribution puts the planted examples in the top-k
(recall at least :data:`MIN_RECALL`, the end-to-end test's bar) and the behavioural verification
supports it (unlearning the top-k moves the behaviour more than unlearning random examples); the
gate fails v2 (REGRESSION, exit 1) and passes v3 retrained without the attributed examples
(PASS, exit 0); ``report.html`` and ``gate.html`` are written. The person-facing lines on stderr
are checked against the files they summarise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from driftscope_llm.services.cli.main import app
from driftscope_llm.services.demo.scenario import PLANTED_PREFIX

MIN_RECALL = 0.8  # of the planted examples in the top-10, as in test_demo_e2e
TOP_K = 10


@pytest.mark.slow
def test_demo_on_defaults_tells_the_story_readme_promises(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    res = CliRunner().invoke(app, ["demo", "--tiny", "--out", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert res.stdout == ""  # the story is told on stderr; stdout stays clean

    raised = [json.loads(line) for line in (out / "anomalies.jsonl").read_text().splitlines()]
    assert {r["model_version"] for r in raised} == {"v2"}  # nothing before the rollout
    assert len({r["incident_id"] for r in raised}) == 1  # one change, one incident

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["signal"], summary["segment"]) == ("refusal", "route=billing")
    assert summary["incident"] == raised[0]["incident_id"]
    assert summary["top_k"] == TOP_K and summary["planted"] == 16
    assert summary["recall_at_k"] >= MIN_RECALL
    assert summary["supports_attribution"] is True and summary["verification_ratio"] > 1.0

    incident = json.loads((out / "report.json").read_text())
    top = [row["id"] for row in incident["attribution"]["aggregate"]][:TOP_K]
    planted_in_top = sum(i.startswith(PLANTED_PREFIX) for i in top)
    assert planted_in_top / TOP_K == summary["recall_at_k"]
    html = (out / "report.html").read_text()
    assert summary["incident"] in html and top[0] in html

    gate = json.loads((out / "gate.json").read_text())
    verdicts = {name.split()[0]: (run["verdict"], run["exit_code"])
                for name, run in gate["runs"].items()}
    assert verdicts == {"v2": ("regression", 1), "v3": ("pass", 0)}
    planted = {f"{PLANTED_PREFIX}{n:02d}" for n in range(16)}
    # the cleaned corpus lost the planted examples (measured: all 16, nothing else)
    assert len(planted & set(gate["removed"])) >= MIN_RECALL * len(planted), gate["removed"]
    assert (out / "gate.html").stat().st_size > 0

    err = " ".join(res.stderr.split())  # rich wraps lines; compare on single spaces
    assert f"investigating {summary['incident']}" in err
    assert "headline refusal/" in err and "on route=billing (support-bot@v2" in err
    shown = re.search(r"recall of the planted examples in the top-10: (\d+)%", err)
    assert shown is not None and int(shown.group(1)) == round(100 * summary["recall_at_k"])
    assert "REGRESSION on refusal (exit 1)" in err and "PASS (exit 0)" in err
