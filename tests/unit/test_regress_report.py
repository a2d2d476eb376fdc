"""The gate's reports on hostile text: JUnit stays valid XML, HTML stays inert, JSON is complete."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from driftscope_llm.services.regress.gate import GateSettings, run_gate
from driftscope_llm.services.regress.generation import GenerationSettings, Sample
from driftscope_llm.services.regress.probes import Probe
from driftscope_llm.services.regress.rendering import RunInfo, render_html, to_json, to_junit

xmlschema = pytest.importorskip("xmlschema")
JUNIT_XSD = Path(__file__).resolve().parents[1] / "data" / "junit.xsd"
EVIL = "<script>alert(1)</script>\x01\x1b[2J\u202e&amp;"


def _result():  # type: ignore[no-untyped-def]
    rng = random.Random(0)
    probes = [Probe(id=f"p{i}{EVIL}", prompt=f"q{i} {EVIL}") for i in range(12)]

    def gen(refuse: float) -> list[list[Sample]]:
        out = []
        for _ in probes:
            group = []
            for _ in range(4):
                text = ("i am unable to help with that ." if rng.random() < refuse
                        else f"sure {EVIL} " * rng.randint(1, 3))
                lps = [min(0.0, rng.gauss(-1, 0.4)) for _ in text.split()]
                group.append(Sample("q", text, lps, [{"a": x} for x in lps], "stop"))
            out.append(group)
        return out

    result = run_gate(probes, gen(0.0), gen(0.6), GateSettings())
    info = RunInfo(f"base{EVIL}", f"cand{EVIL}", "suite.jsonl", GenerationSettings(), 1.5)
    return result, info


def test_junit_is_valid_with_one_case_per_probe_despite_control_characters(
        tmp_path: Path) -> None:
    result, info = _result()
    path = tmp_path / "gate.xml"
    path.write_text(to_junit(result, info), encoding="utf-8")
    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    schema.validate(str(path))
    doc = schema.to_dict(str(path))
    assert int(doc["@tests"]) == len(doc["testcase"]) == 12
    assert int(doc["@failures"]) == sum(p.failed for p in result.probes) > 0
    assert result.verdict == "regression"


def test_html_is_inert_and_json_carries_every_probe() -> None:
    result, info = _result()
    page = render_html([("candidate vs baseline", result, info)])
    assert "<script>" not in page and "\x1b" not in page and "\u202e" not in page
    assert "&lt;script&gt;" in page and 'data-plot="gate-effects"' in page
    doc = json.loads(json.dumps(to_json(result, info)))
    assert doc["verdict"] == "regression" and doc["exit_code"] == 1
    assert [p["id"] for p in doc["probes"]] == [p.probe.id for p in result.probes]
    assert {s["signal"] for s in doc["signals"]} >= {"refusal", "logprob_mean"}
    for s in doc["signals"]:
        assert {"decision", "effect", "min_effect", "detectors"} <= set(s)
