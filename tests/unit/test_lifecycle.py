"""The incident lifecycle has one owner (services/store/lifecycle.py), and finishing an
attribution is one path: the worker's consumer loop and ``driftscope attribute ID`` both call
``Worker.attribute``, so they make the same store transitions, publish the same
AttributionEvent and send the same webhook.

Invariants: no module outside ``services/store/`` changes an incident's state or defines "open"
or "done" (checked by grepping the source tree, and the check is shown to catch the code it
replaced); ``complete`` gives the same answer from every state; a failed re-run never replaces
an attributed report.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from driftscope_llm.services.alerts.deadletter import MemoryDeadLetterSink
from driftscope_llm.services.bus import MemoryBroker, TopicSettings
from driftscope_llm.services.config import WorkerSettings
from driftscope_llm.services.deployables import build_worker
from driftscope_llm.services.schemas import AnomalyEvent
from driftscope_llm.services.store import MemoryStore
from driftscope_llm.services.store.attribution_report import AttributedReport, FailedReport
from driftscope_llm.services.store.lifecycle import (
    LifecycleError,
    Rerun,
    begin,
    complete,
    finish_attribution,
    is_done,
    move,
    start_attribution,
)
from driftscope_llm.services.store.model import Incident, IncidentState
from driftscope_llm.services.worker.errors import JobFailedError
from driftscope_llm.services.worker.service import Outcome
from driftscope_llm.services.worker.settings import ModelTarget
from tests.unit._webhook_sink import WebhookSink

REPO = Path(__file__).resolve().parents[2]
S = IncidentState
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOPICS = TopicSettings(anomalies="anomalies", attributions="attributions")
SECRET = "s3cret-s3cret-s3cret"

# -- one owner: a grep of the source tree ----------------------------------------------------

#: What a lifecycle move or a private definition of "open"/"done" looks like in the source.
LIFECYCLE_MOVES = {
    "Incident.transition call": re.compile(r"\.transition\("),
    "raw lifecycle primitive imported": re.compile(
        r"lifecycle\s+import\s*\(?[^)]*?\b(advance|can_advance|ALLOWED|complete|begin)\b",
        re.S),
    "raw lifecycle primitive called": re.compile(r"\blifecycle\.(advance|can_advance|complete|"
                                                 r"begin)\("),
    "state assigned": re.compile(r"\.state\s*=(?!=)|[\"']state[\"']\s*:\s*IncidentState\."
                                 r"|\bstate\s*=\s*IncidentState\."),
    "state compared to a lifecycle state": re.compile(
        r"\.state\s+(?:is\s+not|is|==|!=|not\s+in|in)\s+[\(\[\{]?\s*IncidentState\."),
}

#: Lines of the code this replaced (44e8acf): each must be caught by one pattern above.
REPLACED = [
    "        incident.transition(incident.state, at)",  # collector/pipeline.py
    "            if self.store.get_incident(inc_id).state is IncidentState.RESOLVED:",
    "from driftscope_llm.services.store.lifecycle import advance, can_advance",  # worker
    "    return incident.attribution is not None or incident.state == IncidentState.RESOLVED",
    "        if target is not IncidentState.ATTRIBUTING and inc.state in (IncidentState.OPEN,",
    "    from driftscope_llm.services.store.lifecycle import advance, can_advance",  # cli/trace
    "        if incident.state is IncidentState.ATTRIBUTING:",
    "    from driftscope_llm.services.store.lifecycle import advance\n",  # cli/incidents
]


def _sources() -> list[Path]:
    roots = [REPO / "services", REPO / "attribution"]
    return sorted(p for root in roots for p in root.rglob("*.py")
                  if "__pycache__" not in p.parts)


def _moves(text: str) -> list[str]:
    return [name for name, pattern in LIFECYCLE_MOVES.items() if pattern.search(text)]


@pytest.mark.parametrize("line", REPLACED)
def test_the_grep_catches_each_kind_of_move_it_replaced(line: str) -> None:
    assert _moves(line), line


def test_lifecycle_moves_happen_only_in_the_store() -> None:
    store = REPO / "services" / "store"
    found = {str(p.relative_to(REPO)): names for p in _sources()
             if store not in p.parents and (names := _moves(p.read_text()))}
    assert found == {}
    inside = {p.name for p in _sources() if store in p.parents and _moves(p.read_text())}
    assert "lifecycle.py" in inside  # the patterns do see moves where they live


# -- the functions ------------------------------------------------------------------------------

def _incident(iid: str = "inc-1", state: IncidentState = S.OPEN) -> Incident:
    inc = Incident(id=iid, opened_at=T0, updated_at=T0, model="support-bot",
                   model_version="v1", segment="billing", signal="refusal",
                   detector="two_proportion", statistic=9.0, threshold=3.0, effect_size=0.3,
                   event_id="e1")
    if state is not S.OPEN:
        inc.transition(state, T0)  # the starting state of a table row, set directly
    return inc


def _attributed(target: str = "support-bot") -> AttributedReport:
    row = {"id": "ex-7", "rank": 1, "mrr": 1.0, "hits": 2, "best_rank": 1, "mean_score": 0.9}
    return AttributedReport.model_validate({
        "status": "attributed", "target": target, "model_dir": "/models/bot",
        "model_fingerprint": "f" * 16, "primary_method": "repsim", "top_k": 10,
        "aggregation": "mrr", "aggregate": [row], "methods": {}, "index_manifest_ids": {},
        "exemplars": ["e1"], "started_at": T0.isoformat(), "finished_at": T0.isoformat()})


FAILED = FailedReport(code="index_mismatch", reason="index_mismatch: built for another model",
                      finished_at=T0)

# start state → (state after an attributed report, moves recorded), (after a failed one)
COMPLETE = {
    S.OPEN: ((S.ATTRIBUTED, ["attributing", "attributed"]), (S.FAILED, ["attributing", "failed"])),
    S.ATTRIBUTING: ((S.ATTRIBUTED, ["attributed"]), (S.FAILED, ["failed"])),
    S.FAILED: ((S.ATTRIBUTED, ["attributing", "attributed"]),
               (S.FAILED, ["attributing", "failed"])),
    S.ATTRIBUTED: ((S.ATTRIBUTED, []), (S.ATTRIBUTED, [])),
    S.ACKNOWLEDGED: ((S.ACKNOWLEDGED, []), (S.ACKNOWLEDGED, [])),
    S.RESOLVED: ((S.RESOLVED, []), (S.RESOLVED, [])),
}


@pytest.mark.parametrize("start", list(S))
def test_complete_from_every_state(start: IncidentState) -> None:
    for report, (state, moves) in zip((_attributed(), FAILED), COMPLETE[start], strict=True):
        inc = _incident(state=start)
        before = len(inc.state_history)
        complete(inc, report, T0)
        assert inc.state is state and inc.attribution == report
        assert [h["state"] for h in inc.state_history[before:]] == moves
        if moves and moves[-1] == "failed":
            assert inc.state_history[-1]["reason"] == FAILED.reason


def test_begin_moves_only_what_awaits_a_report() -> None:
    for start, after in [(S.OPEN, S.ATTRIBUTING), (S.FAILED, S.ATTRIBUTING),
                         (S.ATTRIBUTING, S.ATTRIBUTING), (S.ATTRIBUTED, S.ATTRIBUTED),
                         (S.ACKNOWLEDGED, S.ACKNOWLEDGED), (S.RESOLVED, S.RESOLVED)]:
        inc = _incident(state=start)
        before = len(inc.state_history)
        begin(inc, T0)
        assert inc.state is after
        assert len(inc.state_history) - before == (1 if after is S.ATTRIBUTING else 0)


def test_done_under_each_rerun() -> None:
    fresh, resolved = _incident(), _incident(state=S.RESOLVED)
    failed, attributed = _incident(), _incident()
    complete(failed, FAILED, T0)
    complete(attributed, _attributed(), T0)
    table = {Rerun.NEVER: (False, True, True, True), Rerun.FAILED: (False, True, False, True),
             Rerun.ALWAYS: (False, False, False, False)}
    for rerun, expected in table.items():
        assert tuple(is_done(i, rerun) for i in (fresh, resolved, failed, attributed)) == expected


def test_finish_attribution_keeps_an_attributed_report_from_a_failed_rerun() -> None:
    store = MemoryStore()
    store.save_incident(_incident())
    start_attribution(store, "inc-1", T0)
    stored = finish_attribution(store, "inc-1", _attributed(), T0)
    assert stored is not None and stored.state is S.ATTRIBUTED
    assert finish_attribution(store, "inc-1", _attributed("other"), T0) is None  # done
    assert finish_attribution(store, "inc-1", FAILED, T0, Rerun.ALWAYS) is None  # kept
    rerun = finish_attribution(store, "inc-1", _attributed("other"), T0, Rerun.ALWAYS)
    assert rerun is not None and isinstance(rerun.attribution, AttributedReport)
    assert rerun.attribution.target == "other" and rerun.state is S.ATTRIBUTED


def test_move_refuses_what_the_table_refuses_and_writes_nothing() -> None:
    store = MemoryStore()
    store.save_incident(_incident())
    assert move(store, "inc-1", S.RESOLVED, T0, "fixed").state is S.RESOLVED
    with pytest.raises(LifecycleError) as err:
        move(store, "inc-1", S.ACKNOWLEDGED, T0)
    assert (err.value.current, err.value.target) == (S.RESOLVED, S.ACKNOWLEDGED)
    assert [h["state"] for h in store.get_incident("inc-1").state_history] == ["resolved"]


# -- one path: the worker's loop and `driftscope attribute ID` against each other ---------------

class FakeAttributor:
    """The job, for pure delivery logic: a fixed report, or a failure."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def run(self, incident: Incident, target_key: str, target: ModelTarget) -> AttributedReport:
        self.calls.append(incident.id)
        if self.fail:
            raise JobFailedError("index_mismatch", "built for another model",
                                 incident_id=incident.id)
        return _attributed(target_key)


def _settings(hook: str | None) -> WorkerSettings:
    """The worker's settings: one model target, and a webhook endpoint at ``hook`` if any."""
    endpoints = [] if hook is None else [{"name": "ops", "url": hook, "secret": SECRET,
                                          "events": ["incident.attributed"]}]
    return WorkerSettings.model_validate({
        "topics": TOPICS.model_dump(),
        "models": {"support-bot": {"model_dir": "/models/bot", "indexes": {"repsim": "/idx"}}},
        "webhooks": {"endpoints": endpoints}})


def _events(broker: MemoryBroker) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in broker.messages(TOPICS.attributions)]


def _same_apart_from_ids_and_times(a: Any, b: Any, ids: tuple[str, str]) -> None:
    """``a`` and ``b`` as JSON are equal once incident ids, delivery ids and times are blanked."""
    def blank(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: blank(v) for k, v in x.items()
                    if k not in ("delivery_id", "sent_at", "id", "incident_id")}
        if isinstance(x, list):
            return [blank(v) for v in x]
        if isinstance(x, str) and re.match(r"\d{4}-\d\d-\d\dT", x):
            return "<time>"
        return x
    assert blank(json.loads(json.dumps(a).replace(ids[0], "ID"))) == blank(
        json.loads(json.dumps(b).replace(ids[1], "ID")))


@pytest.mark.parametrize("fail", [False, True], ids=["attributed", "failed"])
def test_the_worker_and_attribute_take_the_same_path(fail: bool) -> None:
    broker, store, job = MemoryBroker(), MemoryStore(), FakeAttributor(fail=fail)
    store.save_incident(_incident("by-worker"))
    store.save_incident(_incident("by-cli"))
    anomaly = AnomalyEvent(incident_id="by-worker", kind="opened", model="support-bot",
                           model_version="v1", segment="billing", signal="refusal",
                           detector="two_proportion", statistic=9.0, threshold=3.0,
                           effect_size=0.3, event_id="e1", ts=T0, exemplars=["e1"])
    broker.append(TOPICS.anomalies, anomaly.model_dump_json().encode())
    with WebhookSink() as hook:
        settings = _settings(hook.url)
        # the consumer loop, as `driftscope worker` runs it
        worker = build_worker(settings, store=store, bus=broker.member("w", max_poll_records=1),
                              attributor=job, dead_letters=MemoryDeadLetterSink(),
                              registry=CollectorRegistry(), settle_s=0.0)
        worker.component.run(max_idle_s=0.0)
        worker.close()
        # one call, as `driftscope attribute by-cli` makes it
        cli = build_worker(settings, store=store, bus=broker.member("cli"), attributor=job,
                           dead_letters=MemoryDeadLetterSink(), registry=CollectorRegistry())
        attempt = cli.component.attribute("by-cli", rerun=Rerun.FAILED)
        cli.close()
        bodies = [json.loads(r.body) for r in hook.received]
        kinds = [r.headers["X-Driftscope-Event"] for r in hook.received]
    assert attempt.outcome is Outcome.STORED and job.calls == ["by-worker", "by-cli"]
    by_worker, by_cli = store.get_incident("by-worker"), store.get_incident("by-cli")
    expected = (["attributing", "failed"] if fail else ["attributing", "attributed"])
    assert [h["state"] for h in by_worker.state_history] == expected
    assert [h["state"] for h in by_cli.state_history] == expected
    assert by_worker.state is by_cli.state is (S.FAILED if fail else S.ATTRIBUTED)
    events = _events(broker)
    assert [e["incident_id"] for e in events] == ["by-worker", "by-cli"]
    assert events[0]["status"] == ("failed" if fail else "attributed")
    _same_apart_from_ids_and_times(events[0], events[1], ("by-worker", "by-cli"))
    assert store.is_published("by-worker") and store.is_published("by-cli")
    assert kinds == ["incident.attributed", "incident.attributed"]
    assert [b["incident"]["id"] for b in bodies] == ["by-worker", "by-cli"]
    _same_apart_from_ids_and_times(bodies[0], bodies[1], ("by-worker", "by-cli"))


def test_attribute_skips_done_work_and_force_runs_it_again() -> None:
    broker, store, job = MemoryBroker(), MemoryStore(), FakeAttributor()
    store.save_incident(_incident())
    with WebhookSink() as hook:
        built = build_worker(_settings(hook.url), store=store, bus=broker.member("cli"),
                             attributor=job, dead_letters=MemoryDeadLetterSink())
        first = built.component.attribute("inc-1", rerun=Rerun.FAILED)
        again = built.component.attribute("inc-1", rerun=Rerun.FAILED)
        forced = built.component.attribute("inc-1", rerun=Rerun.ALWAYS)
        missing = built.component.attribute("nope", rerun=Rerun.FAILED)
        built.close()
        received = len(hook.received)
    assert [a.outcome for a in (first, again, forced, missing)] == [
        Outcome.STORED, Outcome.DONE, Outcome.STORED, Outcome.NOT_FOUND]
    assert job.calls == ["inc-1", "inc-1"]  # the done call ran no job
    assert len(_events(broker)) == 2 and received == 2  # one event and webhook per report
    inc = store.get_incident("inc-1")
    assert inc.state is S.ATTRIBUTED
    assert [h["state"] for h in inc.state_history] == ["attributing", "attributed"]


def test_a_failed_forced_rerun_keeps_the_report_and_announces_nothing() -> None:
    broker, store = MemoryBroker(), MemoryStore()
    store.save_incident(_incident())
    good = build_worker(_settings(None), store=store, bus=broker.member("cli"),
                        attributor=FakeAttributor())
    assert good.component.attribute("inc-1").outcome is Outcome.STORED
    bad = build_worker(_settings(None), store=store, bus=broker.member("cli"),
                       attributor=FakeAttributor(fail=True))
    attempt = bad.component.attribute("inc-1", rerun=Rerun.ALWAYS)
    bad.close()
    good.close()
    assert attempt.outcome is Outcome.KEPT and attempt.report is not None
    assert isinstance(attempt.report, FailedReport) and attempt.report.code == "index_mismatch"
    inc = store.get_incident("inc-1")
    assert isinstance(inc.attribution, AttributedReport) and inc.state is S.ATTRIBUTED
    assert len(_events(broker)) == 1
