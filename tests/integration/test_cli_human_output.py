"""What a person sees: the human output of the incident commands, ``trace``, ``attribute``,
``status`` and ``alerts dead-letters``, through the real ``driftscope`` app (``cli.main.app``).

The attribution reports are real: a tiny GPT-2 fine-tuned with five planted "zorblat" examples,
real repsim and gradsim indexes, and ``Attributor.run`` over zorblat exemplars (the worker test's
fixture). Incidents live in real Redis. Each test asserts specific values (which ids, which
states, which numbers), and that text from outside is printed literally, never as markup.

At 80 columns (the width each test sets itself, never the machine's ``COLUMNS``) no incident id,
model name or headline is cut in ``incidents list``, ``incidents show``, ``status`` or the demo's
tables: each appears whole in the output with whitespace normalised, wherever rich wraps; the
incidents there are real, opened by the collector pipeline replaying two rollouts.
"""

from __future__ import annotations

import gc
import io
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import Result
from rich.console import Console
from typer.testing import CliRunner

pytest.importorskip("torch")

from driftscope_llm.attribution.data import load_corpus
from driftscope_llm.services.alerts.deadletter import RedisDeadLetterSink, UndeliveredWebhook
from driftscope_llm.services.cli.demo import print_attribution, print_incidents
from driftscope_llm.services.cli.main import app
from driftscope_llm.services.collector.build import build_pipeline
from driftscope_llm.services.collector.replay import ReplayStats, replay_file
from driftscope_llm.services.collector.segments import SegmentSettings
from driftscope_llm.services.collector.settings import EmbedderSettings
from driftscope_llm.services.collector.signals import SignalSettings
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.demo import story
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.store import Incident, IncidentState, MemoryStore, StateStore
from driftscope_llm.services.store.attribution_report import AttributedReport, FailedReport
from driftscope_llm.services.store.keys import StoreKeys
from driftscope_llm.services.store.redis_store import RedisStore
from driftscope_llm.services.worker.job import Attributor
from driftscope_llm.services.worker.settings import ModelTarget
from tests.integration.test_worker import (  # the module's tiny model and indexes
    PLANTED,
    PLANTED_QUERY,
    TOP_K,
    Built,
    built,
    make_incident,
)
from tests.stack import StackInfo

__all__ = ["built"]
PLANTED_IDS = {e.id for e in PLANTED}
#: Wide enough that rich never truncates an id or a number in a table cell.
WIDE = {"COLUMNS": "240"}


#: A terminal as narrow as most are (CI logs, tmux panes).
NARROW = {"COLUMNS": "80"}
#: A model name as long as real ones get.
LONG_MODEL = "customer-care-assistant-large-2025"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={**WIDE, **(env or {})})


def flat(text: str) -> str:
    """``text`` with every run of whitespace one space: rich may wrap anywhere."""
    return " ".join(text.split())


def assert_whole(text: str, *values: str) -> None:
    """Each of ``values`` appears uncut in ``text`` (whitespace normalised)."""
    for value in values:
        assert flat(value) in flat(text), (value, text)


def headline(inc: Incident) -> str:
    return f"{inc.signal} on {inc.segment} ({inc.detector})"


def rollout_stream(path: Path) -> Path:
    """Two real rollouts: support-bot v2 refuses billing questions; the long-named model's
    2025-11-03-rc1 is less sure of every token."""
    events = [
        *generate_events(StreamSpec(n=600, seed=1)),
        *generate_events(StreamSpec(n=600, seed=2, model_version="v2", prefix="b", drifts=(
            Drift(start=0, route="billing", refusal_rate=0.5),))),
        *generate_events(StreamSpec(n=600, seed=3, model=LONG_MODEL, prefix="c")),
        *generate_events(StreamSpec(n=600, seed=4, model=LONG_MODEL, prefix="d",
                                    model_version="2025-11-03-rc1",
                                    drifts=(Drift(start=0, logprob_shift=-0.8),)))]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def replay_into(store: StateStore, stream: Path) -> list[Incident]:
    """The incidents the collector pipeline (the replay's defaults) opens in ``store``."""
    pipeline = build_pipeline(DriftSettings(), SignalSettings(), SegmentSettings(),
                              EmbedderSettings(enabled=False), store)
    raised = list(replay_file(stream, pipeline, ReplayStats()))
    found = [store.get_incident(i) for i in dict.fromkeys(r.incident.id for r in raised)]
    assert {i.model for i in found} == {"support-bot", LONG_MODEL}, found
    return found


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the rich tables in ``text`` (cells stripped; header rows dropped)."""
    rows = []
    for line in text.splitlines():
        if "│" not in line:
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] not in ("rank", "id", "group"):
            rows.append(cells)
    return rows


@pytest.fixture(scope="module")
def report(built: Built) -> AttributedReport:
    """A real worker report: repsim (primary) and gradsim over three zorblat exemplars."""
    target = ModelTarget(model_dir=built.model_dir, top_k=TOP_K,
                         indexes={"repsim": built.repsim, "gradsim": built.gradsim})
    return Attributor().run(make_incident("fixture"), "bot@v1", target)


def _stored(store: RedisStore, ident: str, report: Any, opened: datetime) -> Incident:
    inc = make_incident(ident)
    inc.opened_at = inc.updated_at = opened
    inc.transition(IncidentState.ATTRIBUTING, opened)
    inc.transition(IncidentState.ATTRIBUTED, opened)
    inc.attribution = report
    store.save_incident(inc)
    return inc


def test_help_names_every_command() -> None:
    res = invoke("--help")
    assert res.exit_code == 0
    for cmd in ("replay", "collector", "worker", "trace", "attribute", "incidents", "status",
                "models", "alerts", "attribution", "demo"):
        assert re.search(rf"│ {cmd}\s", res.stdout), cmd
    sub = invoke("incidents", "--help")
    assert sub.exit_code == 0
    for cmd in ("list", "show", "ack", "resolve", "purge", "report"):
        assert re.search(rf"│ {cmd}\s", sub.stdout), cmd


def test_trace_prints_ranking_agreement_and_texts(built: Built) -> None:
    args = ("trace", "--model", str(built.model_dir), "--index", str(built.repsim),
            "--index", f"gradsim={built.gradsim}", "--prompt", PLANTED_QUERY.prompt,
            "--output", PLANTED_QUERY.response, "--top-k", str(TOP_K))
    as_json = invoke(*args, "--json")
    assert as_json.exit_code == 0, as_json.output
    expected = json.loads(as_json.stdout.strip().splitlines()[-1])
    res = invoke(*args, "--corpus", str(built.corpus))
    assert res.exit_code == 0, res.output
    assert "most responsible training examples (repsim, mean reciprocal rank over 1 exemplar)" \
        in res.stdout
    rows = table_rows(res.stdout)
    assert [r[1] for r in rows] == [row["id"] for row in expected["aggregate"]]
    assert {r[1] for r in rows[: len(PLANTED_IDS)]} == PLANTED_IDS
    assert all("zorblat" in r[6] for r in rows[: len(PLANTED_IDS)])  # the examples' text
    assert [r[0] for r in rows] == [str(n) for n in range(1, TOP_K + 1)]
    overlap = expected["agreement"]["mean_overlap"]
    assert f"method agreement: overlap@{TOP_K} {overlap:.2f}" in res.stdout
    trust = expected["trust"]  # the worker's verdict, worded for the on-call engineer
    assert trust["level"] in {"high", "medium", "low"}
    assert f"trust: {trust['level'].upper()} — {trust['advice']}" in " ".join(res.stdout.split())
    narrow = invoke(*args, "--corpus", str(built.corpus), env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    assert max(len(line) for line in narrow.stdout.splitlines() if "│" in line) <= 80
    assert [r[1] for r in table_rows(narrow.stdout)] == [r[1] for r in rows]  # one line each
    wide = invoke(*args, "--corpus", str(built.corpus), "--wide", env=NARROW)
    assert wide.exit_code == 0, wide.output
    texts = {e.id: f"{e.prompt} → {e.response}" for e in load_corpus(built.corpus)}
    assert [(r[1], r[6]) for r in table_rows(wide.stdout)] == [  # every text whole
        (r[1], texts[r[1]]) for r in rows]
    assert f"method repsim: repsim:mean_response, index {built.repsim}," in res.stdout
    assert re.search(rf"^method gradsim: gradsim:\w+, index {re.escape(str(built.gradsim))}, "
                     r"\d+\.\d\ds$", res.stdout, re.M)


def test_attribute_reruns_a_failed_incident_through_the_lifecycle(
        built: Built, redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    store = RedisStore(redis_client)
    inc = make_incident("again")
    inc.transition(IncidentState.ATTRIBUTING, inc.opened_at)
    inc.transition(IncidentState.FAILED, inc.opened_at, "index_missing: no index")
    store.save_incident(inc)
    cfg = tmp_path / "worker.yaml"
    cfg.write_text(json.dumps({"redis": {"url": redis_url}, "models": {"bot": {
        "model_dir": str(built.model_dir), "indexes": {"repsim": str(built.repsim)},
        "top_k": TOP_K}}}))
    res = invoke("attribute", "again", "--config", str(cfg))
    assert res.exit_code == 0, res.output
    rows = table_rows(res.stdout)
    assert {r[1] for r in rows[: len(PLANTED_IDS)]} == PLANTED_IDS
    assert "mean reciprocal rank over 3 exemplars" in res.stdout
    assert "method agreement: only one method ran" in res.stdout
    stored = store.get_incident("again")
    assert [h["state"] for h in stored.state_history] == [
        "attributing", "failed", "attributing", "attributed"]
    broken = tmp_path / "broken.yaml"
    broken.write_text(json.dumps({"redis": {"url": redis_url}, "models": {"bot": {
        "model_dir": str(built.model_dir), "indexes": {"repsim": str(tmp_path / "gone")}}}}))
    skipped = invoke("attribute", "again", "--config", str(broken))
    assert skipped.exit_code == 0, skipped.output  # attributed already: left alone
    assert skipped.stderr.strip() == "again is already attributed; --force runs it again"
    assert store.get_incident("again") == stored
    failing = invoke("attribute", "again", "--force", "--config", str(broken))
    assert failing.exit_code == 2 and "Traceback" not in failing.output
    assert failing.stderr.strip() == (
        f"error: incident again: the re-run failed (index_missing: no index for 'repsim' at "
        f"{tmp_path / 'gone'}); its earlier report is kept")
    kept = store.get_incident("again")  # a failed forced re-run keeps the report
    assert kept.state is IncidentState.ATTRIBUTED and kept.attribution == stored.attribution
    assert stored.attribution is not None
    assert [r[1] for r in rows] == [row.id for row in stored.attribution.top()]


def test_incidents_list_and_show(report: Any, redis_url: str,
                                 redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    t0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
    _stored(store, "inc-done", report, t0)
    failed = make_incident("inc-failed")
    failed.opened_at = failed.updated_at = t0 + timedelta(hours=1)
    failed.attribution = FailedReport(code="no_target", reason="no_target: no model target for "
                                      "bot@v9 (settings: models)", finished_at=t0)
    store.save_incident(failed)
    fresh = make_incident("inc-new")
    fresh.opened_at = fresh.updated_at = t0 + timedelta(hours=2)
    store.save_incident(fresh)
    env = {"DRIFTSCOPE_REDIS__URL": redis_url}
    top = report.aggregate[0].id

    listed = invoke("incidents", "list", env=env)
    assert listed.exit_code == 0, listed.output
    assert "3 incidents" in listed.stdout
    rows = table_rows(listed.stdout)
    assert [(r[0], r[1], r[7]) for r in rows] == [
        ("inc-new", "open", ""), ("inc-failed", "open", ""), ("inc-done", "attributed", top)]
    assert rows[2][2] == "2026-03-01T09:00:00+00:00" and rows[2][3] == "bot@v1"

    shown = invoke("incidents", "show", "inc-done", env=env)
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0] == ("inc-done  attributed  bot@v1 segment=all signal=embedding "
                        "detector=mmd")
    assert lines[1] == "statistic 3 (threshold 1), effect 0.8, 3 exemplars, 0 updates"
    assert lines[2].split() == ["2026-03-01T09:00:00+00:00", "attributing"]
    rep = report
    assert [r[1] for r in table_rows(shown.stdout)] == [row.id for row in rep.aggregate]
    assert {r[1] for r in table_rows(shown.stdout)[: len(PLANTED_IDS)]} == PLANTED_IDS
    assert f"overlap@{TOP_K} {rep.agreement.mean_overlap:.2f}" in shown.stdout

    failed_shown = invoke("incidents", "show", "inc-failed", env=env)
    assert failed_shown.exit_code == 0
    assert "attribution failed: no_target: no model target for bot@v9" in failed_shown.stdout
    assert "not attributed yet" in invoke("incidents", "show", "inc-new", env=env).stdout
    missing = invoke("incidents", "show", "inc-nope", env=env)
    assert missing.exit_code == 4 and "inc-nope" in missing.stderr


def test_incidents_at_80_columns_cut_no_id_model_or_headline(
        redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    found = replay_into(RedisStore(redis_client), rollout_stream(tmp_path / "stream.jsonl"))
    env = {"DRIFTSCOPE_REDIS__URL": redis_url}
    table = invoke("incidents", "list", env=env)  # 240 columns: the table fits
    assert table.exit_code == 0, table.output
    expected = [[i.id, f"{i.model}@{i.model_version}", headline(i)] for i in found]
    assert sorted([r[0], r[3], r[5]] for r in table_rows(table.stdout)) == sorted(expected)
    narrow = invoke("incidents", "list", env={**env, **NARROW})
    assert narrow.exit_code == 0, narrow.output
    for row in expected:
        assert_whole(narrow.stdout, *row)
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80, narrow.stdout
    wide = invoke("incidents", "list", "--wide", env={**env, **NARROW})  # one line per row
    assert wide.exit_code == 0, wide.output
    assert table_rows(wide.stdout) == table_rows(table.stdout)

    for inc in found:
        shown = invoke("incidents", "show", inc.id, env={**env, **NARROW})
        assert shown.exit_code == 0, shown.output
        assert flat(shown.stdout).startswith(f"{inc.id} open {inc.model}@{inc.model_version}")
        assert_whole(shown.stdout, f"segment={inc.segment} signal={inc.signal} "
                                   f"detector={inc.detector}")
        for f in inc.facets:
            assert_whole(shown.stdout, f"{f.segment} {f.signal} {f.detector}")
        assert max(len(line) for line in shown.stdout.splitlines()) <= 80, shown.stdout
        wide_shown = invoke("incidents", "show", inc.id, "--wide", env={**env, **NARROW})
        facets = [r[:3] for r in table_rows(wide_shown.stdout) if r[0] != "segment"]
        assert sorted(facets) == sorted([f.segment, f.signal, f.detector] for f in inc.facets)


def test_an_incident_is_named_by_a_unique_prefix(redis_url: str, redis_client: redis.Redis,
                                                tmp_path: Path) -> None:
    found = replay_into(RedisStore(redis_client), rollout_stream(tmp_path / "stream.jsonl"))
    env = {"DRIFTSCOPE_REDIS__URL": redis_url}
    a, b = sorted(i.id for i in found)
    n = next(n for n in range(5, len(a)) if not b.startswith(a[:n]))  # shortest unique prefix
    whole = invoke("incidents", "show", a, env=env)
    by_prefix = invoke("incidents", "show", a[:n], env=env)
    assert by_prefix.exit_code == 0, by_prefix.output
    assert by_prefix.stdout == whole.stdout and by_prefix.stdout.startswith(a)
    as_json = invoke("incidents", "show", a[:n], "--json", env=env)
    assert json.loads(as_json.stdout)["id"] == a
    ack = invoke("incidents", "ack", b[:n], env=env)
    assert (ack.exit_code, ack.stderr.strip()) == (0, f"{b} is now acknowledged")

    ambiguous = invoke("incidents", "show", "inc-", env=env)
    assert ambiguous.exit_code == 2 and ambiguous.stdout == ""
    assert ambiguous.stderr.strip() == (f"error: incident prefix 'inc-' is ambiguous: it starts "
                                        f"{a}, {b}; type more of the id")
    for typed in ("inc-zz", "*", "inc-[0-9a-f]*", "?"):  # glob characters are literal
        missing = invoke("incidents", "resolve", typed, env=env)
        assert (missing.exit_code, missing.stderr.strip()) == (
            4, f"error: incident {typed!r} not found"), typed
    purge = invoke("incidents", "purge", a[:n], env=env)  # purge deletes: whole ids only
    assert purge.exit_code == 4
    assert sorted(i.id for i in RedisStore(redis_client).list_incidents()) == [a, b]
    # an index entry whose record expired names nothing: "inc-" now resolves to the other one
    redis_client.delete(StoreKeys().incident(a))
    left = invoke("incidents", "show", "inc-", "--json", env=env)
    assert left.exit_code == 0 and json.loads(left.stdout)["id"] == b


def test_demo_tables_at_80_columns_cut_no_id_model_headline_or_response(
        report: AttributedReport, built: Built, tmp_path: Path) -> None:
    store = MemoryStore()
    det = story.detect(rollout_stream(tmp_path / "stream.jsonl"), store, use_embedder=False,
                       on_progress=lambda n: None)
    incidents = story.opened_incidents(det.raised, store)
    assert {i.model for i in incidents} == {"support-bot", LONG_MODEL}
    corpus = {e.id: e for e in load_corpus(built.corpus)}
    top = report.aggregate[0].id  # a response longer than the 60 characters the demo once kept
    corpus[top] = replace(corpus[top], response=" ".join([corpus[top].response] * 8))
    assert len(corpus[top].response) > 60
    for width in (80, 200):
        out = io.StringIO()
        con = Console(file=out, width=width, color_system=None)
        print_incidents(con, incidents)
        print_attribution(con, report, corpus)
        text = out.getvalue()
        for inc in incidents:
            assert_whole(text, inc.id, f"{inc.model}@{inc.model_version}", headline(inc))
        for row in report.aggregate:  # each example's response in full, not cut at 60
            assert_whole(text, row.id, corpus[row.id].response)
        assert max(len(line) for line in text.splitlines()) <= width, text


def test_outside_text_is_printed_literally(redis_url: str, redis_client: redis.Redis) -> None:
    inc = make_incident("inc-evil")
    inc.model = "[red]bot[/red]"
    inc.segment = "route=\x1b[2Jbilling\r"
    RedisStore(redis_client).save_incident(inc)
    env = {"DRIFTSCOPE_REDIS__URL": redis_url}
    for res in (invoke("incidents", "list", env=env),
                invoke("incidents", "show", "inc-evil", env=env)):
        assert res.exit_code == 0, res.output
        assert "[red]bot[/red]@v1" in res.stdout
        assert "route=\\x1b[2Jbilling" in res.stdout
        assert "\x1b" not in res.stdout and "\r" not in res.stdout


def test_ack_resolve_purge_say_what_they_did(redis_url: str, redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    t0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
    for n in range(3):
        inc = make_incident(f"inc-{n}")
        inc.opened_at = inc.updated_at = t0 + timedelta(hours=n)
        store.save_incident(inc)
    env = {"DRIFTSCOPE_REDIS__URL": redis_url}
    ack = invoke("incidents", "ack", "inc-2", "--note", "on it", env=env)
    assert (ack.exit_code, ack.stderr.strip()) == (0, "inc-2 is now acknowledged")
    res = invoke("incidents", "resolve", "inc-2", env=env)
    assert (res.exit_code, res.stderr.strip()) == (0, "inc-2 is now resolved")
    again = invoke("incidents", "ack", "inc-2", env=env)
    assert again.exit_code == 2
    assert again.stderr.strip() == ("error: incident inc-2 is resolved; it cannot become "
                                    "acknowledged (allowed: none)")
    assert "Traceback" not in again.output
    purge = invoke("incidents", "purge", "inc-0", "--before", (t0 + timedelta(hours=2))
                   .isoformat(), env=env)
    assert (purge.exit_code, purge.stderr.strip()) == (0, "purged 2 incidents")
    assert [i.id for i in store.list_incidents()] == ["inc-2"]
    nothing = invoke("incidents", "purge", env=env)
    assert nothing.exit_code == 2 and "name incident ids or --before" in nothing.output


def test_incident_report_writes_the_html(report: Any, redis_url: str,
                                         redis_client: redis.Redis, tmp_path: Path,
                                         built: Built) -> None:
    _stored(RedisStore(redis_client), "inc-html", report, datetime(2026, 3, 1, tzinfo=UTC))
    out = tmp_path / "r.html"
    res = invoke("incidents", "report", "inc-html", "--html", str(out), "--corpus",
                 str(built.corpus), env={"DRIFTSCOPE_REDIS__URL": redis_url})
    assert (res.exit_code, res.stderr.strip()) == (0, f"report -> {out}"), res.output
    page = out.read_text()
    rep = report
    assert f"overlap@{TOP_K} {rep.agreement.mean_overlap:.2f}" in page
    for row in rep.aggregate:
        assert f"<td>{row.id}</td><td>{row.mrr:.3f}</td>" in page
    assert page.count('class="planted"') == len(PLANTED_IDS)


def test_status_human_output(stack: StackInfo, kafka_bootstrap: str, redis_url: str,
                             redis_client: redis.Redis, report: Any) -> None:
    store = RedisStore(redis_client)
    _stored(store, "inc-open", report, datetime(2026, 3, 1, tzinfo=UTC))
    closed = make_incident("inc-closed")
    closed.transition(IncidentState.RESOLVED, closed.opened_at)
    store.save_incident(closed)
    env = {"DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "DRIFTSCOPE_REDIS__URL": redis_url, "DRIFTSCOPE_PROMETHEUS_URL": stack.prometheus_url}
    res = invoke("status", "--group", "nobody-human-output", env=env)
    assert res.exit_code == 1, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["kafka", kafka_bootstrap, "up"]
    assert lines[1].split() == ["redis", redis_url, "up"]
    assert lines[2].split() == ["prometheus", stack.prometheus_url, "up"]
    assert "1 open incidents" in res.stdout
    assert ["inc-open", "attributed", "bot@v1", "embedding on all (mmd)"] in table_rows(res.stdout)
    assert ["nobody-human-output", "(no committed offsets)", "", "", "", ""] in table_rows(
        res.stdout)
    down = invoke("status", env={**env, "DRIFTSCOPE_REDIS__URL": "redis://:hunter2@127.0.0.1:1/0"})
    assert down.exit_code == 3
    assert re.search(r"^redis\s+redis://127\.0\.0\.1:1/0\s+unreachable ConnectionError",
                     down.stdout, re.M)
    assert "hunter2" not in down.output  # the address is shown without credentials


def test_status_at_80_columns_cuts_no_id_model_or_headline(
        stack: StackInfo, kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis,
        tmp_path: Path) -> None:
    found = replay_into(RedisStore(redis_client), rollout_stream(tmp_path / "stream.jsonl"))
    env = {"DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "DRIFTSCOPE_REDIS__URL": redis_url, "DRIFTSCOPE_PROMETHEUS_URL": stack.prometheus_url}
    group = "a-consumer-group-with-a-long-name-nobody-uses"
    res = invoke("status", "--group", group, env={**env, **NARROW})
    assert res.exit_code == 1, res.output
    assert f"{len(found)} open incidents" in res.stdout
    for inc in found:
        assert_whole(res.stdout, inc.id, f"{inc.model}@{inc.model_version}", headline(inc))
    assert_whole(res.stdout, group, f"kafka {kafka_bootstrap} up")
    assert max(len(line) for line in res.stdout.splitlines()) <= 80, res.stdout
    wide = invoke("status", "--group", group, "--wide", env={**env, **NARROW})
    assert wide.exit_code == 1, wide.output
    rows = table_rows(wide.stdout)
    for inc in found:
        assert [inc.id, inc.state.value, f"{inc.model}@{inc.model_version}",
                headline(inc)] in rows
    assert [group, "(no committed offsets)", "", "", "", ""] in rows


def test_an_unreachable_redis_is_waited_for_once_then_exit_3() -> None:
    res = invoke("incidents", "list",
                 env={"DRIFTSCOPE_REDIS__URL": "redis://:hunter2@127.0.0.1:1/0"})
    assert res.exit_code == 3
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("waiting up to 5s for redis at redis://127.0.0.1:1/0 (")
    assert sum(line.startswith("waiting") for line in lines) == 1
    assert lines[-1].startswith("error: redis unreachable while trying to list incidents")
    assert "hunter2" not in res.output and "Traceback" not in res.output


def test_dead_letters_prints_newest_first(redis_url: str, redis_client: redis.Redis) -> None:
    sink = RedisDeadLetterSink(redis_client)
    at = datetime(2026, 3, 1, tzinfo=UTC)
    for n, reason in enumerate(("exhausted", "rejected")):
        sink.write(UndeliveredWebhook(endpoint=f"hook-{n}", event="incident.opened",
                              delivery_id=f"d-{n}", subject="inc-1", reason=reason,
                              attempts=3, last_status=500 - n * 100, last_error=None,
                              first_attempt_at=at, failed_at=at,
                              content_type="application/json", body="{}"))
    res = invoke("alerts", "dead-letters", "--count", "5",
                 env={"DRIFTSCOPE_REDIS__URL": redis_url})
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(r["endpoint"], r["reason"], r["last_status"]) for r in records] == [
        ("hook-1", "rejected", 400), ("hook-0", "exhausted", 500)]
    # an entry that is not a record (written by hand) is skipped with a warning, not a crash
    redis_client.lpush(sink.key, b'{"endpoint": "half a record"')
    res = invoke("alerts", "dead-letters", "--count", "5",
                 env={"DRIFTSCOPE_REDIS__URL": redis_url})
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["endpoint"] for line in res.stdout.splitlines()] == [
        "hook-1", "hook-0"]
    assert res.stderr.strip() == ("warning: skipped 1 unreadable entry of "
                                  "driftscope:webhooks:dead (not dead-letter records)")


def test_alert_receiver_without_credentials_says_which_setting() -> None:
    res = invoke("alerts", "receive")
    assert res.exit_code == 2
    assert res.stderr.startswith("error: the receiver needs credentials: set "
                                 "receiver.bearer_token or receiver.signing_secrets")
    assert res.stderr.rstrip().endswith("(setting: receiver)") and "Traceback" not in res.output
    gc.collect()  # the metrics socket it opened is closed, not left to a later test's collector
