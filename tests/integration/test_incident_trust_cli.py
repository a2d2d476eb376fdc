"""``incidents show`` states how far to trust an attribution with the figures of the task family
the incident's signal resembles (issue 26): a length drift is a change of style, so a length
incident shows the primary method's measured Cover and QLD on the *style* family — not the
method's worst family, which a signal name the trust table did not know used to fall back to.

The report is a real worker report (``Attributor.run`` on the tiny planted model and its repsim
and gradsim indexes, the worker test's fixture) for an incident on ``length_tokens``, the name
the collector emits; the incident lives in real Redis and is shown through the real app.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis
from typer.testing import CliRunner

pytest.importorskip("torch")

from driftscope_llm.attribution.trust import MEASURED, SIGNAL_FAMILY
from driftscope_llm.services.cli.main import app
from driftscope_llm.services.store import IncidentState
from driftscope_llm.services.store.redis_store import RedisStore
from driftscope_llm.services.vocabulary import Signal
from driftscope_llm.services.worker.job import Attributor
from driftscope_llm.services.worker.settings import ModelTarget
from tests.integration.test_worker import TOP_K, Built, built, make_incident

__all__ = ["built"]
PRIMARY = "repsim:mean_response"


@pytest.mark.parametrize("signal", [Signal.LENGTH_TOKENS, Signal.LENGTH_CHARS])
def test_a_length_incident_shows_the_style_familys_figures(
        built: Built, redis_url: str, redis_client: redis.Redis, signal: Signal) -> None:
    incident = make_incident(f"inc-{signal.value}")
    incident.signal = signal.value
    target = ModelTarget(model_dir=built.model_dir, top_k=TOP_K,
                         indexes={"repsim": built.repsim, "gradsim": built.gradsim})
    report = Attributor().run(incident, "bot@v1", target)
    assert report.trust is not None
    assert (report.trust.method, report.trust.family) == (PRIMARY, "style")
    style, worst = MEASURED[PRIMARY]["style"], MEASURED[PRIMARY]["rule"]
    assert (report.trust.measured_cover, report.trust.measured_cover_lo,
            report.trust.measured_qld) == (style.cover, style.cover_lo, style.qld)
    assert SIGNAL_FAMILY[signal] == "style" and style.cover != worst.cover

    at = datetime(2026, 3, 1, 9, tzinfo=UTC)
    incident.opened_at = incident.updated_at = at
    incident.transition(IncidentState.ATTRIBUTING, at)
    incident.transition(IncidentState.ATTRIBUTED, at)
    incident.attribution = report
    RedisStore(redis_client).save_incident(incident)

    shown = CliRunner().invoke(app, ["incidents", "show", incident.id],
                               env={"DRIFTSCOPE_REDIS__URL": redis_url, "COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    assert f"signal={signal.value}" in shown.stdout.splitlines()[0]
    [line] = [x for x in shown.stdout.splitlines() if x.startswith("trust: ")]
    assert line == report.trust.describe()
    assert (f"[measured: {PRIMARY} Cover 0.87 (95% lower bound 0.84) on the style task family, "
            "QLD +0.10]") in line
