"""Probe suites: the file contract (unique ids, clear errors) and the seeded generators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftscope_llm.services.regress.errors import ProbeSuiteError
from driftscope_llm.services.regress.probes import (
    CONTEXT_PREFIXES,
    PERTURBATIONS,
    Probe,
    perturb,
    read_suite,
    stratified_sample,
    write_suite,
)


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "suite.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_roundtrip_keeps_order_and_fields(tmp_path: Path) -> None:
    probes = [Probe(id="a", prompt="how do i pay ?", source="corpus", group="billing",
                    metadata={"route": "billing"}), Probe(id="b", prompt="where is my parcel ?")]
    path = tmp_path / "s.jsonl"
    assert write_suite(path, probes) == 2
    assert read_suite(path) == probes
    assert json.loads(path.read_text().splitlines()[1]) == {"id": "b",
                                                            "prompt": "where is my parcel ?"}


def test_repeated_id_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, ['{"id": "p1", "prompt": "a"}', "",
                             '{"id": "p2", "prompt": "b"}', '{"id": "p1", "prompt": "c"}'])
    with pytest.raises(ProbeSuiteError) as info:
        read_suite(path)
    err = info.value
    assert (err.line, err.probe_id) == (4, "p1")
    assert "first on line 1" in str(err) and f"{path}:4" in str(err)


@pytest.mark.parametrize(("line", "needle"), [
    ("not json", "not valid JSON"),
    ('["id", "prompt"]', "JSON object"),
    ('{"id": "x"}', "prompt"),
    ('{"id": "", "prompt": "p"}', "id"),
    ('{"id": 3, "prompt": "p"}', "id"),
    ('{"id": "x", "prompt": "p", "response": "r"}', "response"),
])
def test_bad_lines_name_the_line_and_the_field(tmp_path: Path, line: str, needle: str) -> None:
    path = _write(tmp_path, ['{"id": "ok", "prompt": "fine"}', line])
    with pytest.raises(ProbeSuiteError) as info:
        read_suite(path)
    assert info.value.line == 2
    assert needle in str(info.value)


def test_empty_suite_and_missing_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ProbeSuiteError, match="no probes"):
        read_suite(_write(tmp_path, ["", "  "]))
    with pytest.raises(ProbeSuiteError, match="cannot read"):
        read_suite(tmp_path / "absent.jsonl")


def test_write_refuses_repeated_ids(tmp_path: Path) -> None:
    with pytest.raises(ProbeSuiteError, match="repeats"):
        write_suite(tmp_path / "s.jsonl", [Probe(id="a", prompt="x"), Probe(id="a", prompt="y")])


def test_perturbations_are_seeded_labelled_and_distinct() -> None:
    base = [Probe(id="q1", prompt="how do i change my card ?", group="billing"),
            Probe(id="q2", prompt="something is wrong with the app .")]
    one = perturb(base, seed=3, per_kind=2)
    assert one == perturb(base, seed=3, per_kind=2)  # deterministic
    assert one != perturb(base, seed=4, per_kind=2)  # and the seed matters
    assert one[:2] == base
    variants = one[2:]
    assert len({p.id for p in one}) == len(one)
    for v in variants:
        parent = v.id.split("~")[0]
        kind = v.source.removeprefix("perturbation:") if v.source else ""
        assert kind in PERTURBATIONS and v.id.startswith(f"{parent}~{kind}")
        original = next(p for p in base if p.id == parent)
        assert v.prompt != original.prompt
        assert v.group == (original.group or original.id)
    ctx = [v for v in variants if v.source == "perturbation:context"]
    assert ctx and all(any(v.prompt.startswith(c) for c in CONTEXT_PREFIXES) for v in ctx)
    casing = [v for v in variants if v.source == "perturbation:casing"]
    assert all(v.prompt.lower() == next(p for p in base if v.id.startswith(p.id)).prompt.lower()
               for v in casing)


def test_unknown_perturbation_is_refused() -> None:
    with pytest.raises(ProbeSuiteError, match="unknown perturbation 'typo'"):
        perturb([Probe(id="a", prompt="x y")], ["typo"])


def test_stratified_sample_takes_equal_shares_and_dedups_prompts() -> None:
    rows = [(f"b{i}", f"billing question {i}", "billing") for i in range(40)]
    rows += [(f"s{i}", f"shipping question {i}", "shipping") for i in range(3)]
    rows += [("dup", "billing question 0", "billing")]
    sample = stratified_sample(rows, 5, seed=1)
    strata = [p.metadata["stratum"] for p in sample]
    assert strata.count("billing") == 5 and strata.count("shipping") == 3
    assert len({p.prompt for p in sample}) == len(sample)
    assert sample == stratified_sample(rows, 5, seed=1)
    assert all(p.id.startswith("corpus:") and p.source == "corpus" for p in sample)
