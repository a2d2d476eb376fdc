from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from driftscope_llm import attribution
from driftscope_llm.attribution.data import Example, corpus_hash, load_corpus, write_jsonl
from driftscope_llm.attribution.errors import CorpusError, SettingsError, UnknownMethodError
from driftscope_llm.attribution.settings import AttributionSettings, parse_method_spec


def test_public_api_is_exactly_all() -> None:
    assert sorted(attribution.__all__) == sorted(set(attribution.__all__))
    for name in attribution.__all__:
        assert getattr(attribution, name) is not None


def test_import_does_not_load_torch_or_services() -> None:
    code = ("import sys, attribution; "
            "print(any(m in sys.modules for m in ('torch', 'transformers', 'kafka', 'redis')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_corpus_roundtrip_and_extra_fields(tmp_path) -> None:
    ex = [Example("a", "p", "r", label="x", metadata={"m": 1}, extra={"topic": "t"})]
    write_jsonl(tmp_path / "c.jsonl", ex)
    back = load_corpus(tmp_path / "c.jsonl")
    assert back == ex
    assert back[0].field_value("topic") == "t"
    assert back[0].field_value("m") == 1


@pytest.mark.parametrize(("line", "message"), [
    ("not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"id": "b", "prompt": "p"}', "missing field 'response'"),
    ('{"id": "b", "prompt": 3, "response": "r"}', "must be a string"),
    ('{"id": "a", "prompt": "p", "response": "r"}', "duplicate id 'a'"),
])
def test_bad_line_is_named(tmp_path, line: str, message: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "a", "prompt": "p", "response": "r"}) + "\n\n" + line + "\n")
    with pytest.raises(CorpusError) as err:
        load_corpus(path)
    assert err.value.line == 3
    assert message in str(err.value)
    assert f"{path}:3" in str(err.value)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(tmp_path / "nope.jsonl")


def test_corpus_hash_ignores_order_but_not_content() -> None:
    ex = [Example(str(i), f"p{i}", f"r{i}") for i in range(20)]
    shuffled = ex[:]
    random.Random(1).shuffle(shuffled)
    assert corpus_hash(ex) == corpus_hash(shuffled)
    assert corpus_hash(ex) != corpus_hash([*ex[:-1], Example("19", "p19", "changed")])


def test_method_specs() -> None:
    s = parse_method_spec("repsim:last_prompt@1")
    assert (s.method, s.variant, s.layer) == ("repsim", "last_prompt", 1)
    assert s.spec == "repsim:last_prompt@1"
    assert AttributionSettings().spec == "repsim:mean_response"
    assert parse_method_spec("gradsim").variant == "cosine"
    with pytest.raises(SettingsError):
        parse_method_spec("gradsim:nope")
    with pytest.raises(UnknownMethodError):
        parse_method_spec("magic")


def test_gradient_methods_share_features_and_repsim_variants_do_not() -> None:
    grad = {parse_method_spec(m).feature_key().__repr__()
            for m in ("gradsim", "gradsim:dot", "lissa", "datainf")}
    assert len(grad) == 1
    reps = {parse_method_spec(m).feature_key().__repr__()
            for m in ("repsim:mean_response", "repsim:last_prompt", "repsim:mean_response@1")}
    assert len(reps) == 3
