"""``driftscope attribution eval --suite`` through the real CLI app: JSON, table, user errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app

SMALL = ["attribution", "eval", "--suite", "--families", "trigger", "--configs", "gpt2/full",
         "--seeds", "0", "--methods", "repsim,bm25,random", "--epochs", "2",
         "--no-counterfactual"]


def _run(*args: str):
    # 80 columns set here, never the machine's COLUMNS (a table title wraps to its table)
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})


def test_suite_json_and_table() -> None:
    r = _run(*SMALL, "--json")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["method"] for row in rows] == ["repsim:mean_response", "bm25", "random"]
    for row in rows:
        assert row["family"] == "trigger" and row["queries"] == 16
        assert row["cover"]["lo"] <= row["cover"]["mean"] <= row["cover"]["hi"]
        assert row["qld"] is None and row["lds"] is None
    assert rows[1]["cover"]["mean"] > rows[2]["cover"]["mean"]  # BM25 beats random here
    r = _run(*SMALL)
    assert r.exit_code == 0, r.output
    flat = " ".join(r.stdout.split())  # compared on single spaces, never on where lines wrap
    assert "attribution evaluation" in flat and "worst case across families" in flat
    assert "wall time:" in flat
    r = _run(*SMALL, "--markdown")
    assert r.exit_code == 0 and r.stdout.startswith("| family | method |")


@pytest.mark.parametrize(("flag", "value", "expect"), [
    ("--families", "weather", "unknown --families weather"),
    ("--configs", "bert/full", "bad --configs entry 'bert/full'"),
    ("--seeds", "one", "--seeds must be comma-separated integers"),
])
def test_suite_user_errors_exit_2(flag, value, expect) -> None:
    args = [a for a in SMALL]
    args[args.index(flag) + 1] = value
    r = _run(*args)
    assert r.exit_code == 2
    assert expect in r.output and "Traceback" not in r.output
