"""``incidents list`` shows one line per incident (headline, facet count, severity) and
``incidents show`` every facet, for an incident the collector pipeline grouped from a real
rollout, stored in real Redis and read through the real ``driftscope`` app."""

from __future__ import annotations

from typing import Any

import redis
from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app
from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline
from driftscope_llm.services.collector.segments import SegmentSettings
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.store.facets import facet_rows
from driftscope_llm.services.store.redis_store import RedisStore


def _rows(text: str, first: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if "│" in line:
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            if cells[0] != first:
                rows.append(cells)
    return rows


def test_list_and_show_present_one_incident_with_every_facet(redis_url: str,
                                                            redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    settings = DriftSettings(reference_size=400, min_reference_values=100, window_size=200,
                             min_window=50, test_every=25, cooldown_events=200)
    p = Pipeline(settings, SignalExtractor(SignalSettings()), SegmentSettings(), store)
    state = PartitionState(topic="t", partition=0)
    events: list[dict[str, Any]] = [
        *generate_events(StreamSpec(n=1600, seed=1)),
        *generate_events(StreamSpec(n=1200, seed=2, model_version="v2", prefix="b", drifts=(
            Drift(start=0, route="billing", refusal_rate=0.4),
            Drift(start=0, logprob_shift=-0.6))))]
    raised = p.process(state, [(i, OutputEvent.model_validate(e)) for i, e in enumerate(events)])
    assert raised and len({r.incident.id for r in raised}) == 1
    inc = store.get_incident(raised[0].incident.id)
    assert len(inc.facets) >= 3

    env = {"DRIFTSCOPE_REDIS__URL": redis_url, "COLUMNS": "250"}  # one table row a line
    runner = CliRunner()
    listed = runner.invoke(app, ["incidents", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    [row] = _rows(listed.stdout, "id")  # one line for the whole rollout
    assert row[:2] == [inc.id, "open"] and row[3] == "support-bot@v2"
    assert row[4] == inc.severity
    assert row[5] == f"{inc.signal} on {inc.segment} ({inc.detector})"
    assert row[6] == str(len(inc.facets))

    shown = runner.invoke(app, ["incidents", "show", inc.id], env=env)
    assert shown.exit_code == 0, shown.output
    assert f"severity {inc.severity}; {len(inc.facets)} facets" in shown.stdout
    facets = _rows(shown.stdout, "segment")
    assert [(r[0], r[1], r[2], r[5]) for r in facets] == [
        (f.segment, f.signal, f.detector, f.first_event_id)
        for f in facet_rows(inc.facets)]
    assert (facets[0][0], facets[0][1], facets[0][2]) == (inc.segment, inc.signal, inc.detector)
