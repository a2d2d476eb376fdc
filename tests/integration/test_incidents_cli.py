"""``driftscope incidents`` against real Redis, and the lifecycle rules it enforces."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis
import typer
from typer.testing import CliRunner

from driftscope_llm.services.cli.errors import EXIT_NOT_FOUND, EXIT_USAGE
from driftscope_llm.services.cli.main import app as main_app
from driftscope_llm.services.store.lifecycle import ALLOWED, LifecycleError, advance
from driftscope_llm.services.store.model import Incident, IncidentState
from driftscope_llm.services.store.redis_store import RedisStore

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def incident(ident: str, model: str, opened: datetime,
             state: IncidentState = IncidentState.OPEN) -> Incident:
    return Incident(id=ident, state=state, opened_at=opened, updated_at=opened, model=model,
                    model_version="v1", segment="all", signal="length", detector="ks",
                    statistic=2.0, threshold=1.0, effect_size=0.4, event_id=f"{ident}-e")


@pytest.fixture
def app() -> typer.Typer:
    """The real ``driftscope`` command line, as a person runs it."""
    return main_app


def run(app: typer.Typer, redis_url: str, *args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, ["incidents", *args],
                             env={"DRIFTSCOPE_REDIS__URL": redis_url})
    return res.exit_code, res.stdout, res.stderr


def test_list_filters_by_model_state_and_time(app: typer.Typer, redis_url: str,
                                              redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    store.save_incident(incident("a", "bot", T0))
    store.save_incident(incident("b", "bot", T0 + timedelta(hours=2), IncidentState.ATTRIBUTED))
    store.save_incident(incident("c", "other", T0 + timedelta(hours=4)))

    code, out, _ = run(app, redis_url, "list", "--json")
    assert code == 0 and [json.loads(x)["id"] for x in out.splitlines()] == ["c", "b", "a"]
    code, out, _ = run(app, redis_url, "list", "--json", "--model", "bot")
    assert [json.loads(x)["id"] for x in out.splitlines()] == ["b", "a"]
    code, out, _ = run(app, redis_url, "list", "--json", "--state", "attributed")
    assert [json.loads(x)["id"] for x in out.splitlines()] == ["b"]
    code, out, _ = run(app, redis_url, "list", "--json", "--since",
                       (T0 + timedelta(hours=1)).isoformat(), "--until",
                       (T0 + timedelta(hours=3)).isoformat())
    assert [json.loads(x)["id"] for x in out.splitlines()] == ["b"]
    code, _, _ = run(app, redis_url, "list", "--state", "sleepy")
    assert code == EXIT_USAGE


def test_ack_resolve_record_history_and_refuse_going_back(app: typer.Typer, redis_url: str,
                                                          redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    store.save_incident(incident("a", "bot", T0, IncidentState.ATTRIBUTED))
    assert run(app, redis_url, "ack", "a", "--note", "looking")[0] == 0
    assert run(app, redis_url, "resolve", "a")[0] == 0
    code, out, _ = run(app, redis_url, "show", "a", "--json")
    shown = json.loads(out)
    assert shown["state"] == "resolved"
    assert [(h["state"], h.get("reason")) for h in shown["state_history"]] == [
        ("acknowledged", "looking"), ("resolved", None)]
    code, _, err = run(app, redis_url, "ack", "a")
    assert code == EXIT_USAGE and "cannot become acknowledged" in err
    assert run(app, redis_url, "show", "nope")[0] == EXIT_NOT_FOUND


def test_lifecycle_allows_the_documented_moves_only() -> None:
    inc = incident("x", "bot", T0)
    for target in ("attributing", "failed", "attributing", "attributed", "acknowledged",
                   "resolved"):
        advance(inc, IncidentState(target), T0)
    assert [h["state"] for h in inc.state_history][-1] == "resolved"
    assert ALLOWED[IncidentState.RESOLVED] == frozenset()
    with pytest.raises(LifecycleError) as err:
        advance(incident("y", "bot", T0, IncidentState.ATTRIBUTED), IncidentState.OPEN, T0)
    assert err.value.current == IncidentState.ATTRIBUTED
