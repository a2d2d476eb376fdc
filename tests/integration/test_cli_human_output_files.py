"""What a person sees from the commands that work on files: ``replay``, ``attribution index
build`` / ``query`` / ``eval`` and ``models export-embedder``, through the real ``driftscope``
app (``cli.main.app``), each checked against its own ``--json`` answer or the files it wrote.

Real artefacts only: a synthetic stream with a planted refusal drift, the worker test's tiny
GPT-2 fine-tuned with five planted "zorblat" examples, and the real all-MiniLM-L6-v2 export.
``replay`` is read at 240 and at 80 columns (set by the test, never the machine's ``COLUMNS``):
at 80 no model, segment, signal, incident id or headline is cut.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

pytest.importorskip("torch")

from driftscope_llm.attribution.data import Example, write_jsonl
from driftscope_llm.services.cli.main import app
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from tests.integration.test_worker import PLANTED, PLANTED_QUERY, TOP_K, Built, built

__all__ = ["built"]
PLANTED_IDS = {e.id for e in PLANTED}
#: Wide enough that rich never truncates an id or a number in a table cell.
WIDE = {"COLUMNS": "240"}


def invoke(*args: str, columns: int = 240) -> Result:
    return CliRunner().invoke(app, list(args), env={**WIDE, "COLUMNS": str(columns)})


def flat(text: str) -> str:
    """``text`` with every run of whitespace one space: rich may wrap anywhere."""
    return " ".join(text.split())


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the rich tables in ``text`` (cells stripped; header rows dropped)."""
    rows = []
    for line in text.splitlines():
        if "│" not in line:
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] not in ("rank", "event", "task", "incident"):
            rows.append(cells)
    return rows


def test_replay_prints_the_anomalies_it_raised(tmp_path: Path) -> None:
    stream = tmp_path / "stream.jsonl"
    v1 = generate_events(StreamSpec(n=800, seed=1))
    v2 = generate_events(StreamSpec(n=800, seed=2, model_version="v2", prefix="b",
                                    drifts=(Drift(start=0, route="billing", refusal_rate=0.5),)))
    stream.write_text("".join(json.dumps(e) + "\n" for e in [*v1, *v2]) + "not json\n")
    as_json = invoke("replay", str(stream), "--no-embed", "--json")
    assert as_json.exit_code == 0, as_json.output
    raised = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert any(r["signal"] == "refusal" and r["segment"] == "route=billing" for r in raised)

    res = invoke("replay", str(stream), "--no-embed")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == (f"1600 valid events replayed, 1 invalid, "
                                          f"{len(raised)} anomalies.")
    rows = [r for r in table_rows(res.stdout) if len(r) == 9]  # the anomalies
    assert [(r[0], r[1], r[2], r[3], r[4], r[8]) for r in rows] == [
        (a["event_id"], f"{a['model']}@{a['model_version']}", a["segment"], a["signal"],
         a["detector"], f"{a['incident_id']} ({a['incident']})") for a in raised]
    incidents = [r for r in table_rows(res.stdout) if len(r) == 7]  # each incident as it ended
    assert [r[0] for r in incidents] == list(dict.fromkeys(a["incident_id"] for a in raised))
    assert all(r[1] == "support-bot@v2" and re.fullmatch(r"\w+ on \S+ \(\w+\)", r[3])
               for r in incidents)
    assert "line 1601: invalid event skipped" in res.stderr

    narrow = invoke("replay", str(stream), "--no-embed", columns=80)
    assert narrow.exit_code == 0, narrow.output
    for a in raised:
        for value in (f"{a['model']}@{a['model_version']}", a["segment"], a["signal"],
                      a["incident_id"]):
            assert value in flat(narrow.stdout), (value, narrow.stdout)
    for r in incidents:  # id, model@version and headline whole
        assert all(value in flat(narrow.stdout) for value in (r[0], r[1], r[3])), r
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80, narrow.stdout
    wide = invoke("replay", str(stream), "--no-embed", "--wide", columns=80)
    assert wide.exit_code == 0, wide.output
    assert table_rows(wide.stdout) == table_rows(res.stdout)  # one line per row, as at 240
    failing = invoke("replay", str(stream), "--no-embed", "--fail-on-drift")
    assert failing.exit_code == 1


def test_attribution_build_query_eval_human_output(built: Built, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    res = invoke("attribution", "index", "build", "--model", str(built.model_dir), "--corpus",
                 str(built.corpus), "--out", str(index))
    assert res.exit_code == 0, res.output
    corpus_n = sum(1 for line in built.corpus.read_text().splitlines() if line.strip())
    assert re.fullmatch(rf"indexed {corpus_n} examples with repsim:mean_response \(\d+ dims\) "
                        rf"into {re.escape(str(index))} in \d+\.\ds", res.stdout.strip())

    queries = tmp_path / "queries.jsonl"
    write_jsonl(queries, [Example(PLANTED_QUERY.id, PLANTED_QUERY.prompt, PLANTED_QUERY.response,
                                  label="planted")])
    args = ("attribution", "query", "--index", str(index), "--index", str(built.gradsim),
            "--queries", str(queries), "--top-k", str(TOP_K))
    as_json = invoke(*args, "--json")
    assert as_json.exit_code == 0, as_json.output
    answers = [json.loads(line) for line in as_json.stdout.splitlines()]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    titles = re.findall(r"query (\S+) —\s+(\S+)", res.stdout)  # a narrow table wraps it
    assert titles == [(a["query_id"], a["method"]) for a in answers]
    rows = table_rows(res.stdout)
    assert [(r[0], r[1]) for r in rows] == [(str(h["rank"]), h["id"]) for a in answers
                                            for h in a["results"]]
    assert {r[1] for r in rows[: len(PLANTED_IDS)]} == PLANTED_IDS  # repsim's answer
    overlap = answers[0]["agreement"]["mean_overlap"]
    assert f"agreement across methods: overlap@{TOP_K}={overlap:.2f}" in res.stdout

    labelled = tmp_path / "labelled.jsonl"
    write_jsonl(labelled, [*PLANTED, *[Example(f"other-{n}", "hello .", "hi .", label="other")
                                       for n in range(5)]])
    ev = invoke("attribution", "eval", "--corpus", str(labelled), "--queries", str(queries),
                "--model", str(built.model_dir), "--methods", "repsim")
    assert ev.exit_code == 0, ev.output
    [row] = table_rows(ev.stdout)
    assert row[:2] == ["-", "repsim:mean_response"]
    assert row[2] == "1.000"  # the planted query's top example is planted
    assert all(re.fullmatch(r"\d\.\d{3}", v) for v in row[2:5])


def test_export_embedder_says_where_it_is(tmp_path: Path) -> None:
    out = tmp_path / ("embedder-" + "x" * 120) / ("e" * 120)  # wider than any terminal
    res = invoke("models", "export-embedder", "--out", str(out), "--no-quantize")
    assert res.exit_code == 0, res.output
    # the path is whole on its line at any width (a long tmp path wrapped it at 80 columns in
    # the fresh-clone run at 78c2aba); the exporter's own warnings may come before it
    assert res.stdout == "" and res.stderr.splitlines()[-1].endswith(f"embedder ready at {out}")
    manifest = json.loads((out / "driftscope-embedder.json").read_text())
    assert (out / "model.onnx").is_file() and not manifest.get("int8")
