"""``driftscope regress`` end to end on real fine-tuned models, through the real typer app.

The demo's two support-bot versions (v1 clean; v2 fine-tuned further with planted billing
refusals) are trained once for the module. v2 against v1 on billing probes must fail with exit 1;
v1 against itself must pass with exit 0; JUnit output must validate against a JUnit schema with
one test case per probe; the HTML report must render in headless Chromium; usage errors exit 2
with one clear line; text from the probe file is escaped on the terminal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
xmlschema = pytest.importorskip("xmlschema")

from typer.testing import CliRunner  # noqa: E402

from driftscope_llm.services.cli.main import app  # noqa: E402
from driftscope_llm.services.demo.scenario import ROUTES, ScenarioSettings, train_versions  # noqa: E402
from driftscope_llm.services.report.svg import SERIES_COLOUR  # noqa: E402
from tests.integration.test_report_chromium import _chromium, _png_pixels  # noqa: E402

pytestmark = pytest.mark.slow

JUNIT_XSD = Path(__file__).resolve().parents[1] / "data" / "junit.xsd"
TEMPLATES = ("how do i change {x} ?", "can you help me with {x} ?", "something is wrong with {x} .")


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    v = train_versions(tmp_path_factory.mktemp("regress-models"), ScenarioSettings())
    return v.v1, v.v2


@pytest.fixture(scope="module")
def billing_probes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("probes") / "billing.jsonl"
    rows = [{"id": f"billing-{i:02d}", "prompt": t.format(x=s)}
            for i, (t, s) in enumerate((t, s) for t in TEMPLATES for s in ROUTES["billing"][0])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _regress(*args: str | Path) -> tuple[int, str, str]:
    # 80 columns set here, never the machine's COLUMNS: the progress line and the tables
    res = CliRunner().invoke(app, ["regress", *map(str, args)], env={"COLUMNS": "80"})
    return res.exit_code, res.stdout, res.stderr


def test_v2_against_v1_fails_with_json_junit_and_html(
        versions: tuple[Path, Path], billing_probes: Path, tmp_path: Path) -> None:
    v1, v2 = versions
    junit, html = tmp_path / "gate.xml", tmp_path / "gate.html"
    code, out, _ = _regress("--baseline", v1, "--candidate", v2, "--probes", billing_probes,
                            "--json", "--junit", junit, "--html", html)
    assert code == 1, out
    doc = json.loads(out)  # one object, nothing else on stdout
    assert doc["verdict"] == "regression" and doc["exit_code"] == 1
    refusal = next(s for s in doc["signals"] if s["signal"] == "refusal")
    assert refusal["decision"] == "regression" and refusal["direction"] == "increase"
    assert refusal["effect"] >= refusal["min_effect"]
    assert any(d["raised"] for d in refusal["detectors"])
    failed = [p for p in doc["probes"] if p["failed"]]
    assert failed and all("refusal" in p["failed_on"] for p in failed)
    assert any("unable to help" in o for p in failed for o in p["candidate_outputs"])

    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(junit))
    tree = xmlschema.XMLSchema(str(JUNIT_XSD)).to_dict(str(junit))
    cases = tree["testcase"]
    assert len(cases) == len(doc["probes"]) == 24
    assert sum("failure" in c for c in cases) == len(failed)
    assert {c["@name"] for c in cases} == {p["id"] for p in doc["probes"]}

    dom = _chromium(tmp_path, "--dump-dom", html.as_uri()).stdout
    assert 'data-plot="gate-effects"' in dom and "REGRESSION" in dom
    assert "exit code 1" in dom and "billing-" in dom
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1100,1400", html.as_uri())
    width, height, bpp, px = _png_pixels(shot.read_bytes())
    target = bytes.fromhex(SERIES_COLOUR[1:])
    hits = sum(1 for i in range(0, width * height * bpp, bpp)
               if all(abs(px[i + k] - target[k]) <= 8 for k in range(3)))
    assert hits > 200, f"only {hits} pixels of the failing-signal colour: the chart did not paint"


def test_v1_against_itself_passes_with_a_readable_table(
        versions: tuple[Path, Path], billing_probes: Path) -> None:
    v1, _ = versions
    code, out, err = _regress("--baseline", v1, "--candidate", v1, "--probes", billing_probes,
                              "--seed", "3")
    assert code == 0, out + err
    assert "PASS" in out and "REGRESSION" not in out
    for signal in ("refusal", "logprob_mean", "length_chars", "finish_reason"):
        assert signal in out
    assert "most changed probes" in out
    assert "sampling 4 per probe" in err  # progress goes to stderr


def test_usage_errors_exit_2_with_one_line(versions: tuple[Path, Path], tmp_path: Path) -> None:
    v1, _ = versions
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    code, out, err = _regress("--baseline", v1, "--candidate", v1, "--probes", dup, "--json")
    assert code == 2 and out == ""
    assert "probe id 'a' repeats" in err and "Traceback" not in err

    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"id": "a", "prompt": "x"}\n')
    code, _, err = _regress("--baseline", tmp_path, "--candidate", v1, "--probes", ok)
    assert code == 2 and "neither a Hugging Face model directory" in err

    code, _, err = _regress("--baseline", "http://127.0.0.1:9/v1", "--baseline-adapter",
                            tmp_path, "--candidate", v1, "--probes", ok)
    assert code == 2 and "adapter applies to a local model" in err

    code, _, err = _regress("--baseline", v1, "--candidate", v1, "--probes", ok)
    assert code == 2 and "needs at least 20" in err

    code, _, err = _regress("--baseline", v1, "--candidate", v1, "--probes", ok,
                            "--fail-on", "refusal=up")
    assert code == 2 and "SIGNAL=increase|decrease|any" in err


def test_fail_on_makes_a_more_confident_model_fail(versions: tuple[Path, Path],
                                                   billing_probes: Path) -> None:
    v1, v2 = versions
    shipping = billing_probes.parent / "shipping.jsonl"
    shipping.write_text("".join(
        json.dumps({"id": f"s{i:02d}", "prompt": t.format(x=s)}) + "\n"
        for i, (t, s) in enumerate((t, s) for t in TEMPLATES for s in ROUTES["shipping"][0])))
    code, out, _ = _regress("--baseline", v1, "--candidate", v2, "--probes", shipping, "--json")
    by = {s["signal"]: s for s in json.loads(out)["signals"]}
    assert by["logprob_mean"]["decision"] == "changed"  # surer of itself: not a regression
    assert by["logprob_mean"]["direction"] == "increase" and code == 0
    code, out, _ = _regress("--baseline", v1, "--candidate", v2, "--probes", shipping, "--json",
                            "--fail-on", "logprob_mean=any")
    assert code == 1
    assert {s["signal"]: s for s in json.loads(out)["signals"]}["logprob_mean"][
        "decision"] == "regression"


def test_endpoint_that_is_down_exits_3(versions: tuple[Path, Path], tmp_path: Path) -> None:
    v1, _ = versions
    suite = tmp_path / "s.jsonl"
    suite.write_text("".join(json.dumps({"id": f"p{i}", "prompt": "how do i pay ?"}) + "\n"
                             for i in range(6)))
    code, _, err = _regress("--baseline", "http://127.0.0.1:9/v1", "--candidate", v1,
                            "--probes", suite, "--timeout", "2")
    assert code == 3 and "cannot reach http://127.0.0.1:9/v1/chat/completions" in err


def test_probe_text_is_escaped_on_the_terminal(versions: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    v1, v2 = versions
    suite = tmp_path / "evil.jsonl"
    # the billing probes of the first test, under hostile ids: the same REGRESSION (exit 1)
    prompts = [t.format(x=s) for t in TEMPLATES for s in ROUTES["billing"][0]]
    rows = [{"id": f"[red]p{i}[/red]\u001b[2J", "prompt": p} for i, p in enumerate(prompts)]
    suite.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = _regress("--baseline", v1, "--candidate", v2, "--probes", suite, "--top", "8")
    assert code == 1, out
    # the markup is shown literally (not applied) and the escape sequence as text, never raw
    assert "[red]p" in out and "[/red]\\x1" in out and "\x1b" not in out
