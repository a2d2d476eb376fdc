"""``driftscope incidents probes``: an incident stored in real Redis becomes a probe suite.

The suite must hold the incident's exemplar prompts, their nearest corpus prompts and their
nearest reference-traffic prompts (same model and segment, earlier version), unique ids, and be
readable by ``regress`` (:func:`read_suite`). The pure neighbour search is tested first.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import redis
from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app
from driftscope_llm.services.regress.incident_probes import Candidate, incident_suite, nearest
from driftscope_llm.services.regress.probes import read_suite
from driftscope_llm.services.store.model import Exemplar, Incident
from driftscope_llm.services.store.redis_store import RedisStore

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
CORPUS = [("billing-1", "how do i change my card ?"), ("billing-2", "where is my last invoice ?"),
          ("ship-1", "where is my parcel ?"), ("tech-1", "the app crashes at start"),
          ("billing-3", "can i change the card on my plan ?")]


def _incident() -> Incident:
    return Incident(
        id="inc-gate", opened_at=T0, updated_at=T0, model="bot", model_version="v2",
        segment="billing", signal="refusal", detector="two_proportion", statistic=9.0,
        threshold=3.0, effect_size=0.2, event_id="v2-9",
        exemplars=[Exemplar(event_id="v2-7", prompt="how do i change my card ?",
                            output="i am unable to help"),
                   Exemplar(event_id="v2-8", prompt="my invoice is wrong",
                            output="i am unable to help"),
                   Exemplar(event_id="v2-9", prompt=None, output="no prompt was sent")])


def test_nearest_ranks_by_shared_rare_words_and_skips_the_query_itself() -> None:
    pool = [Candidate(i, p) for i, p in CORPUS]
    (hits,) = nearest(["how do i change my card ?"], pool, 5)
    ids = [c.id for c, _ in hits]
    assert ids[0] == "billing-3"  # shares "change", "card", "my card"
    assert "billing-1" not in ids  # the same text as the query
    assert "tech-1" not in ids  # shares no term
    sims = [s for _, s in hits]
    assert sims == sorted(sims, reverse=True) and sims[-1] > 0
    assert nearest(["zzz"], pool, 3) == [[]]  # shares no term: no neighbour


def test_suite_lists_exemplars_then_neighbours_each_prompt_once() -> None:
    pool = [Candidate(i, p) for i, p in CORPUS]
    traffic = [Candidate("v1-1", "how can i change my card ?"), Candidate("v1-2", "hello")]
    probes = incident_suite(_incident(), corpus=pool, traffic=traffic, k=2)
    ids = [p.id for p in probes]
    assert ids[:2] == ["exemplar:v2-7", "exemplar:v2-8"]  # the prompt-less exemplar is skipped
    assert "corpus:billing-3" in ids and "traffic:v1-1" in ids
    assert "corpus:billing-1" not in ids  # same text as an exemplar: already in the suite
    assert len({p.prompt for p in probes}) == len(probes) == len(set(ids))
    assert {p.group for p in probes} == {"v2-7", "v2-8"}


def test_incidents_probes_from_redis_writes_a_suite_regress_accepts(
        redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    RedisStore(redis_client).save_incident(_incident())
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "prompt": p, "response": "ok ."}) + "\n"
                              for i, p in CORPUS))
    traffic = tmp_path / "traffic.jsonl"
    events = [("v1-1", "v1", "billing", "can i change my card please ?"),
              ("v1-2", "v1", "shipping", "can i change my card address ?"),  # other segment
              ("v2-3", "v2", "billing", "change my card now ?"),  # the drifted version
              ("v1-4", "v1", "billing", "my invoice looks wrong")]
    traffic.write_text("".join(json.dumps({
        "event_id": e, "ts": T0.isoformat(), "model": "bot", "model_version": v,
        "segment": {"route": s}, "prompt": p, "output": "ok"}) + "\n" for e, v, s, p in events))
    out = tmp_path / "suite.jsonl"
    res = CliRunner().invoke(app, ["incidents", "probes", "inc-gate", "--out", str(out),
                                   "--corpus", str(corpus), "--traffic", str(traffic),
                                   "--neighbours", "2", "--json"],
                             env={"DRIFTSCOPE_REDIS__URL": redis_url})
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    probes = read_suite(out)
    assert summary["probes"] == len(probes)
    traffic_ids = {p.id for p in probes if p.source == "traffic"}
    assert traffic_ids == {"traffic:v1-1", "traffic:v1-4"}
    assert summary["by_source"] == {"exemplar": 2, "corpus": sum(p.source == "corpus"
                                                                 for p in probes),
                                    "traffic": 2}

    res = CliRunner().invoke(app, ["incidents", "probes", "inc-gate", "--out", str(out),
                                   "--perturb", "--per-kind", "2"],
                             env={"DRIFTSCOPE_REDIS__URL": redis_url})
    assert res.exit_code == 0 and "probes for inc-gate" in res.stderr
    varied = read_suite(out)
    assert len(varied) > 2 and sum(p.source == "exemplar" for p in varied) == 2
    assert all(p.group in ("v2-7", "v2-8") for p in varied)

    res = CliRunner().invoke(app, ["incidents", "probes", "nope", "--out", str(out)],
                             env={"DRIFTSCOPE_REDIS__URL": redis_url})
    assert res.exit_code == 4 and "nope" in res.stderr
