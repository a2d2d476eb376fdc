"""The documented exit codes, exactly, for every command that talks to a service.

README: 0 fine, 1 something found, 2 a usage or input error, 3 a service unreachable, 4 an
unknown id. Scripts branch on these numbers, so each test asserts the number itself (never "not
zero"), plus what a person reads: one ``error:`` line on stderr naming what failed, no
traceback, and nothing on stdout (a ``--json`` reader must not parse half a result).

"Unreachable" is a loopback port nobody listens on (bound, read and closed by the test), so the
connection is refused at once, as when a service is down. "Unknown id" is asked of the real Redis.
Every command runs through the real ``driftscope`` app (``cli.main.app``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from click.testing import Result
from typer.testing import CliRunner

from driftscope_llm.services.cli.errors import EXIT_NOT_FOUND, EXIT_SERVICE
from driftscope_llm.services.cli.main import app
from driftscope_llm.services.store.model import Exemplar, Incident
from driftscope_llm.services.store.redis_store import RedisStore
from tests.collector_harness import free_port
from tests.stack import StackInfo

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_codes_are_the_documented_ones() -> None:
    """The constants the commands exit with are the numbers README promises."""
    text = " ".join(README.read_text().split())
    assert "3 a service unreachable" in text and "4 an unknown id" in text
    assert (EXIT_SERVICE, EXIT_NOT_FOUND) == (3, 4)


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(app, args, env={"COLUMNS": "200", **env})


def assert_clean_failure(res: Result, code: int, *words: str) -> None:
    """Exit ``code``; stderr ends in one ``error:`` line naming ``words``; stdout is empty."""
    assert res.exit_code == code, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), \
        repr(res.exception)
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), res.stderr
    for word in words:
        assert word in last, (word, last)
    assert res.stdout == ""


@pytest.fixture
def dead_redis() -> str:
    """A Redis URL on a loopback port nobody listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


def _files(tmp_path: Path) -> dict[str, str]:
    worker = tmp_path / "worker.yaml"
    worker.write_text(json.dumps({"models": {"bot": {"model_dir": str(tmp_path / "model"),
                                                     "indexes": {"repsim": str(tmp_path)}}}}))
    return {"html": str(tmp_path / "r.html"), "out": str(tmp_path / "probes.jsonl"),
            "worker": str(worker)}


#: Every command that reads or writes an incident in Redis, with an incident id to name.
REDIS_COMMANDS = [
    ["incidents", "list"],
    ["incidents", "list", "--json"],
    ["incidents", "show", "{id}"],
    ["incidents", "show", "{id}", "--json"],
    ["incidents", "ack", "{id}"],
    ["incidents", "resolve", "{id}"],
    ["incidents", "purge", "{id}"],
    ["incidents", "report", "{id}", "--html", "{html}"],
    ["incidents", "probes", "{id}", "--out", "{out}"],
    ["incidents", "probes", "{id}", "--out", "{out}", "--json"],
    ["attribute", "{id}", "--config", "{worker}"],
    ["attribute", "{id}", "--config", "{worker}", "--json"],
]


def _args(template: list[str], files: dict[str, str], ident: str) -> list[str]:
    return [a.format(id=ident, **files) for a in template]


@pytest.mark.parametrize("template", REDIS_COMMANDS, ids=" ".join)
def test_redis_unreachable_exits_3(template: list[str], dead_redis: str,
                                   tmp_path: Path) -> None:
    res = invoke(_args(template, _files(tmp_path), "inc-1"),
                 {"DRIFTSCOPE_REDIS__URL": dead_redis})
    assert_clean_failure(res, 3, "redis unreachable")
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "probes.jsonl").exists()


def test_dead_letters_with_redis_unreachable_exits_3(dead_redis: str) -> None:
    res = invoke(["alerts", "dead-letters"], {"DRIFTSCOPE_REDIS__URL": dead_redis})
    assert_clean_failure(res, 3, "cannot read dead-letter records")


#: The commands that name one incident, and must say it is unknown with exit 4.
ID_COMMANDS = [t for t in REDIS_COMMANDS if "{id}" in t]


@pytest.mark.parametrize("template", ID_COMMANDS, ids=" ".join)
def test_unknown_incident_exits_4(template: list[str], redis_url: str,
                                  redis_client: redis.Redis, tmp_path: Path) -> None:
    store = RedisStore(redis_client)
    store.save_incident(_incident("inc-known"))  # a store with something in it, not empty
    res = invoke(_args(template, _files(tmp_path), "inc-nope"),
                 {"DRIFTSCOPE_REDIS__URL": redis_url})
    assert_clean_failure(res, 4, "inc-nope")
    assert [i.id for i in store.list_incidents()] == ["inc-known"]  # nothing created or moved
    assert store.get_incident("inc-known").state.value == "open"
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "probes.jsonl").exists()


def _incident(ident: str) -> Incident:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return Incident(id=ident, opened_at=now, updated_at=now, model="bot", model_version="v1",
                    segment="all", signal="refusal", detector="cusum", statistic=2.0,
                    threshold=1.0, effect_size=0.1, event_id="e1",
                    exemplars=[Exemplar(event_id="e1", prompt="p", output="o")])


@pytest.mark.parametrize("dead", ["kafka", "redis", "prometheus"])
@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
def test_status_exits_3_when_any_one_service_is_down(dead: str, as_json: bool, stack: StackInfo,
                                                     kafka_bootstrap: str,
                                                     redis_url: str) -> None:
    """One service down among live ones: exit 3 (not 1, not 0), and that service, only that
    one, is reported unreachable; the report itself is still printed in full."""
    port = free_port()
    env = {"DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "DRIFTSCOPE_REDIS__URL": redis_url, "DRIFTSCOPE_PROMETHEUS_URL": stack.prometheus_url}
    env |= {"kafka": {"DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"},
            "redis": {"DRIFTSCOPE_REDIS__URL": f"redis://127.0.0.1:{port}/0"},
            "prometheus": {"DRIFTSCOPE_PROMETHEUS_URL": f"http://127.0.0.1:{port}"}}[dead]
    args = ["status", "--group", "nobody-exit-codes", *(["--json"] if as_json else [])]
    res = invoke(args, env)
    assert res.exit_code == 3, (res.output, res.exception)
    assert "Traceback" not in res.output
    if as_json:
        doc = json.loads(res.stdout)
        assert {s: doc[s]["reachable"] for s in ("kafka", "redis", "prometheus")} == {
            s: s != dead for s in ("kafka", "redis", "prometheus")}
    else:
        states = {line.split()[0]: line.split()[2] for line in res.stdout.splitlines()[:3]}
        assert states == {s: "unreachable" if s == dead else "up"
                          for s in ("kafka", "redis", "prometheus")}
