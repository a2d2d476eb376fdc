"""What a gate run says: one JSON object, JUnit XML (one test case per probe), an HTML page.

The JSON object (``driftscope regress --json``) has ``verdict`` (``pass`` / ``regression``),
``exit_code``, the level (``false_alarm_rate``, ``pairs``, ``per_pair_alpha``), ``baseline`` and
``candidate`` (what was compared), ``generation`` (samples, tokens, temperature, seed), one entry
per signal in ``signals`` (``decision``, ``effect``, ``effect_unit``, ``min_effect``,
``direction``, ``detectors`` with statistic, threshold, p-value and ``raised``) and one per probe
in ``probes`` (``id``, ``failed``, ``failed_on``, ``moved``, ``effects`` in min-effect multiples).

JUnit XML follows the common Jenkins/Ant schema (``tests/data/junit.xsd`` is the one the tests
validate against): one ``<testsuite>`` with one
``<testcase classname="driftscope.regress" name="<probe id>">`` per probe, a ``<failure>``
naming the signals it failed on and both sides' first outputs in ``<system-out>``.

The HTML page reuses the incident report's style and SVG bar charts
(:mod:`driftscope_llm.services.report`): verdict, per-signal table, an effect chart, and the most
changed probes with baseline and candidate outputs side by side. Everything that came from a model
or a probe file is escaped; the page has no scripts and loads nothing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from driftscope_llm.services.regress.gate import GateResult, ProbeResult, SignalDecision
from driftscope_llm.services.regress.generation import GenerationSettings
from driftscope_llm.services.report.html import _CSS as REPORT_CSS
from driftscope_llm.services.report.svg import REFERENCE_COLOUR, SERIES_COLOUR, bar_chart
from driftscope_llm.services.textsafety import html_text as escape

__all__ = ["RunInfo", "exit_code", "render_html", "to_json", "to_junit"]

EXIT_PASS, EXIT_REGRESSION = 0, 1
CHANGED_COLOUR = "#8c8c8c"
_OUTPUT_CHARS = 400


@dataclass(frozen=True)
class RunInfo:
    """What was compared, for the reports: model descriptions, the suite, generation settings."""

    baseline: str
    candidate: str
    probes: str
    generation: GenerationSettings
    seconds: float | None = None


def exit_code(result: GateResult) -> int:
    """0 for ``pass``, 1 for ``regression``."""
    return EXIT_PASS if result.verdict == "pass" else EXIT_REGRESSION


def _signal_json(d: SignalDecision) -> dict[str, Any]:
    return {"signal": d.signal, "kind": d.kind, "decision": d.decision, "reason": d.reason,
            "effect": d.effect, "effect_unit": d.effect_unit, "min_effect": d.min_effect,
            "direction": d.direction, "n_baseline": d.n_baseline, "n_candidate": d.n_candidate,
            "baseline": d.baseline, "candidate": d.candidate,
            "detectors": [{"detector": x.name, "raised": x.raised, "statistic": x.statistic,
                           "threshold": x.threshold, "p_value": x.p_value,
                           "disabled": x.disabled} for x in d.detectors]}


def _probe_json(p: ProbeResult) -> dict[str, Any]:
    return {"id": p.probe.id, "prompt": p.probe.prompt, "failed": p.failed,
            "failed_on": p.failed_on, "moved": p.moved,
            "effects": {k: round(v, 6) for k, v in p.effects.items()},
            "baseline_outputs": [s.output for s in p.baseline],
            "candidate_outputs": [s.output for s in p.candidate]}


def to_json(result: GateResult, info: RunInfo) -> dict[str, Any]:
    """The ``--json`` object (module docstring)."""
    g = info.generation
    return {
        "verdict": result.verdict, "exit_code": exit_code(result),
        "false_alarm_rate": result.settings.false_alarm_rate, "pairs": result.pairs,
        "per_pair_alpha": result.per_pair_alpha,
        "baseline": info.baseline, "candidate": info.candidate, "probes_file": info.probes,
        "generation": {"samples": g.samples, "max_new_tokens": g.max_new_tokens,
                       "temperature": g.temperature, "seed": g.seed},
        "seconds": info.seconds,
        "signals": [_signal_json(d) for d in result.signals],
        "probes": [_probe_json(p) for p in result.probes],
    }


def _clean(text: str) -> str:
    """Text safe for XML 1.0 (control characters other than tab/newline removed)."""
    return "".join(c for c in text if c in "\t\n\r" or (ord(c) >= 0x20 and c not in "\ufffe\uffff"))


def to_junit(result: GateResult, info: RunInfo) -> str:
    """JUnit XML: one test case per probe (module docstring)."""
    failures = sum(p.failed for p in result.probes)
    suite = ET.Element("testsuite", {
        "name": "driftscope.regress", "tests": str(len(result.probes)),
        "failures": str(failures), "errors": "0", "skipped": "0",
        "time": f"{info.seconds or 0.0:.3f}"})
    props = ET.SubElement(suite, "properties")
    for k, v in (("verdict", result.verdict), ("baseline", info.baseline),
                 ("candidate", info.candidate), ("probes", info.probes),
                 ("false_alarm_rate", str(result.settings.false_alarm_rate))):
        ET.SubElement(props, "property", {"name": k, "value": _clean(v)})
    alarmed = {d.signal: d for d in result.signals if d.decision == "regression"}
    for p in result.probes:
        case = ET.SubElement(suite, "testcase", {"classname": "driftscope.regress",
                                                 "name": _clean(p.probe.id), "time": "0"})
        if p.failed:
            parts = [f"{s}: suite {alarmed[s].direction} (effect {alarmed[s].effect or 0:.3g} "
                     f"{alarmed[s].effect_unit}); this probe moved {p.effects[s]:.2f}x the "
                     "minimum effect" for s in p.failed_on]
            fail = ET.SubElement(case, "failure", {
                "message": _clean(f"behaviour changed on {', '.join(p.failed_on)}"),
                "type": "regression"})
            fail.text = _clean("\n".join(parts))
        out = ET.SubElement(case, "system-out")
        out.text = _clean(f"prompt: {p.probe.prompt}\nbaseline: {_first(p, 'baseline')}\n"
                          f"candidate: {_first(p, 'candidate')}")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode")


def _first(p: ProbeResult, side: str) -> str:
    samples = p.baseline if side == "baseline" else p.candidate
    return samples[0].output[:_OUTPUT_CHARS] if samples else "(no output)"


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def _signals_table(result: GateResult) -> str:
    head = ("<tr><th>signal</th><th>decision</th><th>effect</th><th>minimum</th>"
            "<th>direction</th><th>detectors (statistic / threshold)</th><th>why</th></tr>")
    rows = []
    for d in result.signals:
        cls = {"regression": "bad", "pass": "ok"}.get(d.decision, "note")
        dets = "<br>".join(
            escape(f"{x.name}: {_fmt(x.statistic)} / {_fmt(x.threshold)}"
                   + (" RAISED" if x.raised else "")
                   + (f" (off: {x.disabled})" if x.disabled else "")) for x in d.detectors)
        rows.append(f"<tr><td>{escape(d.signal)}</td><td class=\"{cls}\">{escape(d.decision)}"
                    f"</td><td>{escape(_fmt(d.effect))} {escape(d.effect_unit or '')}</td>"
                    f"<td>{escape(_fmt(d.min_effect))}</td><td>{escape(d.direction or '')}</td>"
                    f"<td>{dets}</td><td>{escape(d.reason)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _effects_chart(result: GateResult) -> str:
    colour = {"regression": SERIES_COLOUR, "changed": CHANGED_COLOUR}
    bars = [(d.signal, (d.effect or 0.0) / (d.min_effect or 1.0),
             colour.get(d.decision, REFERENCE_COLOUR))
            for d in result.signals if d.decision != "not_tested"]
    if not bars:
        return ""
    svg = bar_chart(bars, title="suite effect per signal, in multiples of its minimum effect",
                    plot_id="gate-effects")
    return (f"<figure>{svg}<figcaption>Red: the signal failed the gate; grey: a detector "
            "raised but the change went the harmless way (e.g. more confident tokens); blue: "
            "it passed. A bar past 1 is a change at least as large as the minimum the gate "
            "cares about; it fails only if a detector also rejects 'no change' at its level."
            "</figcaption>"
            "</figure>")


def _outputs(samples: list[Any]) -> str:
    return "<br>".join(escape(s.output[:_OUTPUT_CHARS]) or "<i>(empty)</i>"
                       for s in samples[:3])


def _probes_table(result: GateResult, n: int) -> str:
    head = ("<tr><th>probe</th><th>prompt</th><th>baseline outputs</th>"
            "<th>candidate outputs</th><th>moved (× minimum effect)</th></tr>")
    rows = []
    for p in result.most_changed(n):
        moved = ", ".join(f"{s} {p.effects[s]:.1f}" for s in p.moved) or "—"
        cls = ' class="planted"' if p.failed else ""
        mark = ' <b class="bad">failed</b>' if p.failed else ""
        rows.append(f"<tr{cls}><td>{escape(p.probe.id)}{mark}</td>"
                    f"<td>{escape(p.probe.prompt)}</td><td>{_outputs(p.baseline)}</td>"
                    f"<td>{_outputs(p.candidate)}</td><td>{escape(moved)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def render_section(result: GateResult, info: RunInfo, *, heading: str, top: int = 10) -> str:
    """One gate run as an HTML section (a page holds one; the demo's report holds two)."""
    verdict = ('<span class="ok">PASS</span>' if result.verdict == "pass"
               else '<span class="bad">REGRESSION</span>')
    failed = sum(p.failed for p in result.probes)
    g = info.generation
    return (
        f"<h2>{escape(heading)}</h2>"
        f"<p>Verdict: <b>{verdict}</b> (exit code {exit_code(result)}). Candidate "
        f"<code>{escape(info.candidate)}</code> against baseline "
        f"<code>{escape(info.baseline)}</code> on {len(result.probes)} probes from "
        f"<code>{escape(info.probes)}</code>, {g.samples} samples each (temperature "
        f"{g.temperature}, up to {g.max_new_tokens} tokens, seed {g.seed}). False-alarm level "
        f"{result.settings.false_alarm_rate:g} over {result.pairs} (signal, detector) pairs "
        f"({result.per_pair_alpha:.2g} each). {failed} probes failed.</p>"
        f"{_effects_chart(result)}{_signals_table(result)}"
        f"<h3>Most changed probes</h3>{_probes_table(result, top)}")


def render_html(runs: list[tuple[str, GateResult, RunInfo]], *,
                title: str = "driftscope regression gate") -> str:
    """A self-contained page with one section per ``(heading, result, info)``."""
    body = "".join(render_section(r, i, heading=h) for h, r, i in runs)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{REPORT_CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1>{body}"
            "<p class=\"note\">Generated by driftscope regress; self-contained (no scripts, no "
            "network).</p></body></html>")
