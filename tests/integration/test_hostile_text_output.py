"""Hostile text from traffic reaching people (issue 19, failures 1 and 5), on real Redis and the
real ``driftscope`` command line.

On ec31e46 a model name or output carrying ``\\x1b]0;…\\x07\\x1b[2J`` was printed raw by
``incidents list``/``show`` (at 80 columns the sequence was cut without its terminator), the
HTML report kept raw ESC/BEL bytes, and ``incidents report --events`` printed a traceback on a
stream file with a 5,000-deep or 5,000-digit line.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import redis
from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app
from driftscope_llm.services.collector.synthetic import StreamSpec, generate_events
from driftscope_llm.services.store.model import Exemplar, Incident
from driftscope_llm.services.store.redis_store import RedisStore

TITLE_AND_CLEAR = "\x1b]0;pwned\x07\x1b[2J"
RLO = "\u202e"
# C0 (but tab/newline, which HTML may keep), DEL, C1, bidi controls
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
T0 = datetime(2026, 11, 28, 10, tzinfo=UTC)


def _hostile_incident() -> Incident:
    return Incident(
        id="inc-hostile", opened_at=T0, updated_at=T0, model=f"bot{TITLE_AND_CLEAR}{RLO}gpj.exe",
        model_version="v1", segment=f"route=billing{RLO}", signal="refusal", detector="cusum",
        statistic=9.0, threshold=4.0, effect_size=0.3, event_id="e-1",
        exemplars=[Exemplar(event_id=f"e-{i}", prompt=f"ask\x07{i}",
                            output=f"sorry{TITLE_AND_CLEAR}\x9b31m[bold]x[/bold]{RLO}")
                   for i in range(3)])


def _invoke(redis_url: str, *args: str, width: int = 80) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args), env={"DRIFTSCOPE_REDIS__URL": redis_url,
                                                   "COLUMNS": str(width)})
    return res.exit_code, res.stdout + res.stderr


def test_list_and_show_print_no_control_character_at_any_width(
        redis_url: str, redis_client: redis.Redis) -> None:
    RedisStore(redis_client).save_incident(_hostile_incident())
    for width in (80, 200):
        for args in (("incidents", "list"), ("incidents", "show", "inc-hostile")):
            code, out = _invoke(redis_url, *args, width=width)
            assert code == 0, out
            assert not RAW_CONTROL.search(out), (args, width, repr(out[:300]))
    code, out = _invoke(redis_url, "incidents", "show", "inc-hostile", width=200)
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in out and "\\u202e" in out


def test_html_report_has_no_raw_control_characters(redis_url: str, redis_client: redis.Redis,
                                                   tmp_path: Path) -> None:
    RedisStore(redis_client).save_incident(_hostile_incident())
    page = tmp_path / "report.html"
    code, out = _invoke(redis_url, "incidents", "report", "inc-hostile", "--html", str(page))
    assert code == 0, out
    html = page.read_text(encoding="utf-8")
    assert not RAW_CONTROL.search(html)
    assert "sorry\\x1b]0;pwned\\x07" in html and "[bold]x[/bold]" in html


def test_report_events_skips_poison_lines_without_a_traceback(
        redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    RedisStore(redis_client).save_incident(_hostile_incident())
    lines = [json.dumps(e).encode() for e in generate_events(StreamSpec(n=200, seed=8))]
    lines[50:50] = [
        b'{"event_id":"p1","ts":"2026-11-28T10:00:00Z","model":"m","output":"o","metadata":'
        + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"event_id":"p2","ts":"2026-11-28T10:00:00Z","model":"m","output":"o","latency_ms":'
        + b"9" * 5000 + b"}",
        b'{"event_id":"p3","ts":"2026-11-28T10:00:00Z","model":"m","output":"\\ud800"}',
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    page = tmp_path / "report.html"
    code, out = _invoke(redis_url, "incidents", "report", "inc-hostile", "--html", str(page),
                        "--events", str(events))
    assert code == 0, out
    assert "Traceback" not in out and page.stat().st_size > 0
