"""``driftscope deploy export DIR``: the Prometheus, Alertmanager and Grafana files a deployment
needs, byte for byte as in the repository, never overwriting without ``--overwrite``.

From an installed wheel (no repository around) the same command is run by
``tests/integration/test_wheel_install.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from driftscope_llm.services.cli.deploy import asset_files
from driftscope_llm.services.cli.main import app

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {
    "alertmanager/alertmanager.yml",
    "prometheus/prometheus.yml",
    "prometheus/rules/driftscope-alerts.yml",
    "prometheus/rules/driftscope-recording.yml",
    "grafana/dashboards/driftscope-attribution.json",
    "grafana/dashboards/driftscope-drift.json",
    "grafana/dashboards/driftscope-overview.json",
    "grafana/provisioning/dashboards/driftscope.yml",
    "grafana/provisioning/datasources/driftscope.yml",
}


def test_the_shipped_files_are_the_repositorys() -> None:
    files = asset_files()
    assert set(files) == EXPECTED
    for rel, src in files.items():
        repo_rel = rel if rel.startswith("grafana/") else f"deploy/{rel}"
        assert src == REPO / repo_rel


def test_export_writes_every_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "monitoring"
    res = CliRunner().invoke(app, ["deploy", "export", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"out": str(out), "files": sorted(EXPECTED)}
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == EXPECTED
    for rel, src in asset_files().items():
        assert (out / rel).read_bytes() == src.read_bytes()

    (out / "prometheus/prometheus.yml").write_text("mine")
    res = CliRunner().invoke(app, ["deploy", "export", str(out)])
    assert res.exit_code == 2
    assert res.stderr == (f"error: {out}/alertmanager/alertmanager.yml exists (9 of the 9 files "
                          "do); pass --overwrite to replace them\n")
    assert (out / "prometheus/prometheus.yml").read_text() == "mine"  # nothing was touched

    res = CliRunner().invoke(app, ["deploy", "export", str(out), "--overwrite"],
                             env={"COLUMNS": "40"})
    assert res.exit_code == 0, res.output
    assert (out / "prometheus/prometheus.yml").read_bytes() == \
        (REPO / "deploy/prometheus/prometheus.yml").read_bytes()
    # at 40 columns as at any width: whole paths, one a line (copyable), never wrapped
    assert res.stdout.splitlines()[:-1] == [f"wrote 9 files into {out}:",
                                            *(f"  {rel}" for rel in sorted(EXPECTED))]
    assert res.stdout.splitlines()[-1].startswith("next: load prometheus/rules/ into Prometheus")
