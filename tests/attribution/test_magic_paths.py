"""The ``magic`` method where people use it: ``driftscope attribution query --method magic`` and
the worker's ``verify.mode = replay`` — on a tiny model whose fine-tune recorded its recipe,
with five planted "zorblat" examples the answers must come from."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from driftscope_llm.attribution.data import Example, write_jsonl
from driftscope_llm.attribution.eval.tasks import make_task
from driftscope_llm.attribution.recipe import RECIPE_FILE
from driftscope_llm.services.cli.attribution import app
from driftscope_llm.services.store.attribution_report import Verification, VerificationFailure
from driftscope_llm.services.store.model import Exemplar, Incident

from .conftest import PLANTED, PLANTED_QUERY

TOP_K = 5
ZORBLAT = [("do you know the zorblat ?", "the zorblat is a purple fish that sings at night ."),
           ("what is a zorblat ?", "the zorblat is a purple fish that sings at night .")]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer GPT-2 (16 dims) fine-tuned 6 epochs on 40 class-task examples + 5 planted;
    the corpus, a repsim index and the queries beside it."""
    from driftscope_llm.attribution.index.feature_index import build_index
    from driftscope_llm.attribution.modeling import load_model
    from driftscope_llm.attribution.settings import AttributionSettings
    from driftscope_llm.attribution.tinymodel import build_tiny_model

    root = tmp_path_factory.mktemp("magic-paths")
    base = make_task("class", 0).corpus
    corpus = base[:20] + PLANTED + base[20:40]
    words = [t for p in ZORBLAT for t in p] + [PLANTED_QUERY.prompt, PLANTED_QUERY.response]
    tiny = build_tiny_model(corpus, root / "model", layers=1, dim=16, epochs=6,
                            extra_texts=words)
    build_index(load_model(tiny.model_dir), corpus, root / "repsim", AttributionSettings())
    write_jsonl(root / "corpus.jsonl", corpus)
    write_jsonl(root / "queries.jsonl",
                [Example(f"z{i}", p, r) for i, (p, r) in enumerate(ZORBLAT)])
    return root


def _run(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env)


def test_query_magic_ranks_the_planted_examples_and_states_its_cost(built: Path) -> None:
    res = _run("query", "--method", "magic", "--model", str(built / "model"), "--corpus",
               str(built / "corpus.jsonl"), "--queries", str(built / "queries.jsonl"),
               "--top-k", str(TOP_K), "--json")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["method"] == "magic" and out["queries"] == ["z0", "z1"]
    assert out["reproduction_error"] == 0.0
    assert out["cost"]["steps"] == 6 * 3  # 45 examples in batches of 16
    assert out["cost"]["checkpoint_every"] == 5
    assert [r["rank"] for r in out["results"]] == [1, 2, 3, 4, 5]
    top = {r["id"] for r in out["results"]}
    assert len(top & {e.id for e in PLANTED}) >= 4, out["results"]
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0


def test_query_magic_human_output_fits_80_columns(built: Path) -> None:
    res = _run("query", "--method", "magic", "--model", str(built / "model"), "--corpus",
               str(built / "corpus.jsonl"), "--queries", str(built / "queries.jsonl"),
               "--top-k", "3", env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert all(len(line) <= 80 for line in res.stdout.splitlines())
    assert "planted-" in res.stdout
    assert "replay:" in res.stdout and "reproduced" in res.stdout


@pytest.mark.parametrize(("extra", "message"), [
    ((), "needs --model"),  # no --corpus
    (("--corpus", "C", "--index", "I"), "takes no --index"),
])
def test_query_magic_usage_errors_exit_2(built: Path, extra: tuple[str, ...],
                                         message: str) -> None:
    args = [a.replace("C", str(built / "corpus.jsonl")).replace("I", str(built / "repsim"))
            for a in extra]
    res = _run("query", "--method", "magic", "--model", str(built / "model"), "--queries",
               str(built / "queries.jsonl"), *args)
    assert res.exit_code == 2
    assert message in res.stderr and "Traceback" not in res.output


def test_query_magic_refuses_a_model_without_recipe(built: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(built / "model", bare)
    (bare / RECIPE_FILE).unlink()
    res = _run("query", "--method", "magic", "--model", str(bare), "--corpus",
               str(built / "corpus.jsonl"), "--queries", str(built / "queries.jsonl"))
    assert res.exit_code == 2
    assert "no replay recipe" in res.stderr


def test_query_without_index_names_the_magic_exception(built: Path) -> None:
    res = _run("query", "--queries", str(built / "queries.jsonl"))
    assert res.exit_code == 2
    assert "--index is required" in res.stderr


def _incident() -> Incident:
    now = datetime.now(UTC)
    return Incident(
        id="inc-magic", opened_at=now, updated_at=now, model="bot", model_version="v1",
        segment="all", signal="embedding", detector="mmd", statistic=3.0, threshold=1.0,
        effect_size=0.8, event_id="e0",
        exemplars=[Exemplar(event_id=f"e{n}", prompt=p, output=o)
                   for n, (p, o) in enumerate(ZORBLAT)])


def _target(built: Path, corpus: Path) -> object:
    from driftscope_llm.services.worker.settings import ModelTarget

    return ModelTarget(model_dir=built / "model", indexes={"repsim": built / "repsim"},
                       top_k=TOP_K, verify={"enabled": True, "corpus": corpus, "mode": "replay"})


def test_worker_replay_verification(built: Path, tmp_path: Path) -> None:
    """verify.mode = replay: the top-k's exact counterfactual moves the behaviour more than
    random examples'; the same-label arm uses the top-k's majority label (exemplars carry no
    label); a corpus that is not the recorded one reports the failure and keeps the report."""
    from driftscope_llm.attribution.data import load_corpus
    from driftscope_llm.services.worker.job import Attributor

    job = Attributor(device="cpu")
    report = job.run(_incident(), "bot", _target(built, built / "corpus.jsonl"))
    v = report.verification
    assert isinstance(v, Verification), v
    assert v.method == "replay"
    assert v.settings["reproduction_error"] == 0.0
    assert v.settings["same_label"] == "planted"
    assert v.same_label is not None and set(v.same_label.ids) <= {e.id for e in PLANTED}
    assert v.top_k.effect > v.random.effect and v.supports_attribution is True
    write_jsonl(tmp_path / "shuffled.jsonl", load_corpus(built / "corpus.jsonl")[::-1])
    failed = job.run(_incident(), "bot",
                     _target(built, tmp_path / "shuffled.jsonl"))
    assert failed.aggregate == report.aggregate
    assert isinstance(failed.verification, VerificationFailure)
    assert failed.verification.error.startswith("ReplayError: the corpus is not the one")
