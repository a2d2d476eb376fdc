"""The demo's closed loop on real fine-tunes: clean the attributed data, retrain, gate.

The attribution step is the only part replaced: the report names, for each drifted exemplar,
the planted examples as its top-k (what the demo's attribution finds — 100 % recall in
``make demo``), so this test is about the loop itself. v2 (trained with the planted refusals)
must fail the gate against v1 with exit code 1; v3 (v1 retrained on the corpus without the
attributed examples, with v2's recipe) must pass with exit code 0; the page must show both.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("torch")

from driftscope_llm.services.demo import scenario as sc
from driftscope_llm.services.demo.last_act import close_the_loop, story_lines
from driftscope_llm.services.regress.rendering import exit_code
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.store.attribution_report import (
    AttributedReport,
    ExemplarRanking,
    MethodResult,
    RankedExample,
)
from driftscope_llm.services.store.model import Exemplar, Incident

pytestmark = pytest.mark.slow
T0 = datetime(2025, 1, 6, 10, tzinfo=UTC)


def test_v2_fails_and_the_retrained_v3_passes(tmp_path: Path) -> None:
    settings = sc.ScenarioSettings()
    versions = sc.train_versions(tmp_path / "models", settings)
    clean, planted = sc.clean_corpus(), sc.planted_examples()
    billing = [p for r, p in sc.production_prompts() if r == "billing"]
    exemplars = [Exemplar(event_id=f"v2-{i}", prompt=p, output="i am unable to help")
                 for i, p in enumerate(billing[::5])]
    traffic = [OutputEvent(event_id=f"v1-{i}", ts=T0, model=sc.MODEL_NAME, model_version="v1",
                           prompt=p, output="ok", segment={"route": "billing"})
               for i, p in enumerate(billing)]
    incident = Incident(id="inc-loop", opened_at=T0, updated_at=T0, model=sc.MODEL_NAME,
                        model_version="v2", segment="billing", signal="refusal",
                        detector="two_proportion", statistic=9.0, threshold=3.0,
                        effect_size=0.2, event_id="v2-9", exemplars=exemplars)
    # an exemplar that does not show the behaviour (no refusal) has its own, unrelated neighbours:
    # they must stay in the corpus
    calm = Exemplar(event_id="v2-calm", prompt=billing[1], output="sure , open settings .")
    incident.exemplars.append(calm)
    ranked = [RankedExample(id=e.id, score=1.0 - i / 100, rank=i + 1)
              for i, e in enumerate(planted)]
    unrelated = [RankedExample(id=e.id, score=0.5, rank=i + 1) for i, e in enumerate(clean[:16])]
    per_exemplar = [*(ExemplarRanking(query_id=e.event_id, method="repsim", results=ranked)
                      for e in exemplars),
                    ExemplarRanking(query_id=calm.event_id, method="repsim", results=unrelated)]
    report = AttributedReport(
        target="support-bot", model_dir=str(versions.v2), model_fingerprint="v2",
        primary_method="repsim", top_k=len(planted), aggregation="mrr", aggregate=[],
        methods={"repsim": MethodResult(spec="repsim", index="/idx", manifest_id="m",
                                        seconds=0.0, per_exemplar=per_exemplar, aggregate=[])},
        index_manifest_ids={"repsim": "m"},
        exemplars=[e.event_id for e in incident.exemplars], started_at=T0, finished_at=T0)

    steps: list[str] = []
    story = close_the_loop(tmp_path, incident, report, clean + planted,
                           {"v1": versions.v1, "v2": versions.v2}, traffic, settings,
                           top_k=len(planted), on_step=steps.append)
    assert sorted(story.removed) == sorted(e.id for e in planted)
    assert [json.loads(x)["id"] for x in (tmp_path / "corpus-v3.jsonl").read_text().splitlines()
            ] == [e.id for e in clean]
    assert any("retraining v3" in s for s in steps)
    (v2_heading, v2, _), (v3_heading, v3, _) = story.runs
    assert "v2 against v1" in v2_heading and "v3 against v1" in v3_heading
    assert (v2.verdict, exit_code(v2)) == ("regression", 1)
    assert next(d for d in v2.signals if d.signal == "refusal").decision == "regression"
    assert (v3.verdict, exit_code(v3)) == ("pass", 0)

    lines = story_lines(story, sc.PLANTED_PREFIX)
    assert any("REGRESSION on refusal (exit 1)" in x for x in lines)
    assert any("v3 against v1" in x and "PASS (exit 0)" in x for x in lines)
    page = story.page.read_text()
    assert page.count("exit code 1") == 1 and page.count("exit code 0") == 1
    saved = json.loads((tmp_path / "gate.json").read_text())
    assert [r["verdict"] for r in saved["runs"].values()] == ["regression", "pass"]
