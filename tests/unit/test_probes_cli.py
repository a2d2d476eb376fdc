"""``driftscope probes corpus|perturb`` through the real app: files written, errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app
from driftscope_llm.services.regress.probes import read_suite


def _corpus(tmp: Path) -> Path:
    rows = [{"id": f"{r}-{i}", "prompt": f"{r} question {i} ?", "response": "ok .", "label": r,
             "metadata": {"tier": "gold" if i % 2 else "free"}}
            for r, n in (("billing", 30), ("tech", 2)) for i in range(n)]
    path = tmp / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, ["probes", *args])
    return res.exit_code, res.stdout, res.stderr


def test_corpus_suite_is_stratified_by_label_or_metadata(tmp_path: Path) -> None:
    out = tmp_path / "suite.jsonl"
    code, stdout, _ = _run("corpus", str(_corpus(tmp_path)), "--out", str(out),
                           "--per-stratum", "5", "--json")
    assert code == 0 and json.loads(stdout) == {"out": str(out), "probes": 7}
    strata = [p.metadata["stratum"] for p in read_suite(out)]
    assert strata.count("billing") == 5 and strata.count("tech") == 2
    code, _, err = _run("corpus", str(_corpus(tmp_path)), "--out", str(out), "--by", "tier",
                        "--per-stratum", "3")
    assert code == 0 and "6 probes" in err
    assert {p.group for p in read_suite(out)} == {"gold", "free"}


def test_perturb_adds_variants_and_refuses_bad_input(tmp_path: Path) -> None:
    suite = tmp_path / "s.jsonl"
    suite.write_text('{"id": "a", "prompt": "how do i pay my bill ?"}\n')
    out = tmp_path / "v.jsonl"
    code, _, _ = _run("perturb", str(suite), "--out", str(out), "--kinds", "casing,context",
                      "--per-kind", "2")
    assert code == 0
    varied = read_suite(out)
    assert varied[0].id == "a" and {p.source for p in varied[1:]} <= {
        "perturbation:casing", "perturbation:context"}
    code, _, err = _run("perturb", str(suite), "--out", str(out), "--kinds", "typo")
    assert code == 2 and "unknown perturbation 'typo'" in err
    suite.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    code, _, err = _run("perturb", str(suite), "--out", str(out))
    assert code == 2 and "repeats" in err and "Traceback" not in err
