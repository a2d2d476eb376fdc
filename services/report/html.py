"""A self-contained HTML incident report: one file, inline CSS and SVG, no scripts, no network.

Sections: the incident (what alarmed, statistic vs threshold, effect), each drifted signal over
time against its reference with the change point marked (rolling mean of the per-event values;
the dashed line is the reference mean, the band ±1 reference standard deviation), the embedding
picture (reference vs window in the reference's two principal directions — or a sentence saying
why there is none), the exemplars, the attribution ranking with the training examples' text,
method agreement, and the behavioural verification (effect of unlearning the top-k vs k random
examples; :mod:`driftscope_llm.attribution.verify`).
"""

from __future__ import annotations

import statistics
from typing import Any

from driftscope_llm.services.report.inputs import ReportInputs, SignalSeries
from driftscope_llm.services.report.svg import (
    REFERENCE_COLOUR,
    SERIES_COLOUR,
    bar_chart,
    line_chart,
    rolling_mean,
    scatter_chart,
)
from driftscope_llm.services.store.attribution_report import (
    AttributedReport,
    FailedReport,
    VerificationFailure,
)
from driftscope_llm.services.textsafety import html_text as escape  # controls too (issue 19)

__all__ = ["render_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1000px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:2em}table{border-collapse:collapse;width:100%;font-size:.9em}
td,th{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.kv td:first-child{font-weight:600;width:14em}
.planted{background:#fff3f3}.note{color:#666;font-size:.9em}.ok{color:#2a7d2a}.bad{color:#b00}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}
"""

_SMOOTH = 25


def _kv(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _header(r: ReportInputs) -> str:
    inc = r.incident
    p = "" if inc.p_value is None else f"{inc.p_value:.3g}"
    rows = [
        ("incident", escape(inc.id)), ("state", escape(inc.state.value)),
        ("model", escape(f"{inc.model}@{inc.model_version}")),
        ("segment", escape(inc.segment)), ("signal / detector", escape(
            f"{inc.signal} / {inc.detector}")),
        ("statistic (threshold)", f"{inc.statistic:.4g} ({inc.threshold:.4g})"),
        ("effect size", f"{inc.effect_size:.4g}"), ("p-value", p),
        ("opened", escape(inc.opened_at.isoformat(timespec="seconds"))),
        ("raised by event", escape(inc.event_id)), ("updates", str(inc.updates)),
    ]
    hist = "<br>".join(escape(f"{h['at']} {h['state']} {h.get('reason', '')}")
                       for h in inc.state_history)
    rows.append(("history", hist))
    return _kv(rows)


def _series_figure(s: SignalSeries) -> str:
    pts = [v for v in s.values if v is not None]
    if len(pts) < 2:
        return f'<p class="note">{escape(s.signal)}: not measured on this stream.</p>'
    idx = [i for i, v in enumerate(s.values) if v is not None]
    ref_vals = [v for i, v in zip(idx, pts, strict=True) if i < s.reference_n]
    ref_mean = statistics.fmean(ref_vals) if ref_vals else None
    band = None
    if len(ref_vals) > 1 and ref_mean is not None:
        sd = statistics.pstdev(ref_vals)
        band = (ref_mean - sd, ref_mean + sd)
    markers: list[tuple[int, str]] = [(n, f"{v} starts") for v, n in s.version_starts.items()
                                      if n > 0]
    if s.change_index is not None:
        markers.append((s.change_index, "change point"))
    elif s.alarm_index is not None:
        markers.append((s.alarm_index, "alarm"))
    # markers are in event index; map to the plotted (measured-only) index
    pos = {i: j for j, i in enumerate(idx)}
    mapped = [(pos.get(m, _nearest(idx, m)), label) for m, label in markers]
    svg = line_chart(rolling_mean(pts, _SMOOTH), title=f"{s.signal} over time",
                     reference=ref_mean, reference_band=band, markers=mapped,
                     plot_id=f"signal-{s.signal}")
    ref_txt = "n/a" if ref_mean is None else f"{ref_mean:.4g}"
    return (f"<figure>{svg}<figcaption><b>{escape(s.signal)}</b>: rolling mean over "
            f"{_SMOOTH} events (red) against the reference mean {ref_txt} (dashed blue, band "
            f"±1 sd; the first {s.reference_n} events of the stream); green: version rollout and "
            "change point.</figcaption></figure>")


def _nearest(idx: list[int], m: int) -> int:
    return min(range(len(idx)), key=lambda j: abs(idx[j] - m)) if idx else 0


def _signals(r: ReportInputs) -> str:
    if not r.series:
        return ('<p class="note">No event stream was given, so the signals cannot be drawn '
                "over time; the reference and window summaries the detector compared:</p>"
                + _summaries(r))
    return "".join(_series_figure(s) for s in r.series) + _summaries(r)


def _summaries(r: ReportInputs) -> str:
    inc = r.incident
    keys = sorted(set(inc.reference_summary) | set(inc.window_summary))
    if not keys:
        return ""
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(_short(inc.reference_summary.get(k)))}"
                   f"</td><td>{escape(_short(inc.window_summary.get(k)))}</td></tr>"
                   for k in keys)
    return ("<table><tr><th>summary</th><th>reference</th><th>window</th></tr>"
            f"{rows}</table>")


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    text = str(v) if v is not None else ""
    return text if len(text) < 120 else text[:117] + "…"


def _embedding(r: ReportInputs) -> str:
    e = r.embedding
    if e is None:
        return f'<p class="note">{escape(r.embedding_note or "No embeddings were recorded for this stream, so there is no embedding picture.")}</p>'  # noqa: E501
    svg = scatter_chart([("reference", REFERENCE_COLOUR, [tuple(p) for p in e.reference]),
                         ("window", SERIES_COLOUR, [tuple(p) for p in e.window])],
                        title="output embeddings: reference vs drifted window")
    return (f"<figure>{svg}<figcaption>{escape(e.source)}; both sets projected on the reference's "
            "two principal directions (PCA fitted on the reference only).</figcaption></figure>")


def _facets(r: ReportInputs) -> str:
    """Every facet (segment x signal x detector) that saw the change, headline first."""
    from driftscope_llm.services.store.facets import facet_rows

    inc = r.incident
    if not inc.facets:
        return '<p class="note">One facet: the incident above.</p>'
    rows = "".join(
        f"<tr><td>{escape(f.segment)}</td><td>{escape(f.signal)}</td>"
        f"<td>{escape(f.detector)}</td>"
        f"<td>{f.effect_size:.3g} {escape(f.effect_unit)}</td>"
        f"<td>{f.relative_effect:.1f}</td><td>{escape(f.direction)}</td>"
        f"<td>{escape(f.first_event_id)}</td><td>{escape(f.first_at_text)}</td>"
        f"<td>{f.alarms}</td><td>{escape(', '.join(f.exemplars[:5]))}</td></tr>"
        for f in facet_rows(inc.facets))
    return (f'<p>Severity <b>{escape(inc.severity)}</b>; {len(inc.facets)} facets. The headline '
            "(first row) has the largest effect relative to its signal's minimum effect; "
            "exemplars favour behavioural facets (refusal, topic, confidence) over operational "
            "ones (length, latency).</p><table><tr><th>segment</th><th>signal</th>"
            "<th>detector</th><th>effect</th><th>&times; minimum</th><th>direction</th>"
            "<th>first event</th><th>first at</th><th>alarms</th><th>exemplars</th></tr>"
            f"{rows}</table>")


def _exemplars(r: ReportInputs) -> str:
    rows = "".join(f"<tr><td>{escape(e.event_id)}</td><td>{escape(e.prompt or '')}</td>"
                   f"<td>{escape(e.output or '')}</td></tr>" for e in r.incident.exemplars)
    return ("<table><tr><th>event</th><th>prompt</th><th>output</th></tr>"
            f"{rows}</table>") if rows else '<p class="note">No exemplars.</p>'


def _attribution(r: ReportInputs) -> str:
    rep = r.incident.attribution
    if rep is None:
        return '<p class="note">Not attributed yet.</p>'
    if isinstance(rep, FailedReport):
        return f'<p class="bad">Attribution failed: {escape(rep.reason)}</p>'
    head = ("<tr><th>rank</th><th>training example</th><th>MRR</th><th>hits</th>"
            "<th>prompt</th><th>response</th></tr>")
    rows = []
    for row in rep.aggregate:
        ex = r.corpus.get(row.id)
        cls = ' class="planted"' if ex is not None and ex.label == "planted" else ""
        rows.append(f"<tr{cls}><td>{row.rank}</td><td>{escape(row.id)}</td>"
                    f"<td>{row.mrr:.3f}</td><td>{row.hits}</td>"
                    f"<td>{escape(ex.prompt if ex else '(text not available)')}</td>"
                    f"<td>{escape(ex.response if ex else '')}</td></tr>")
    bars = bar_chart([(row.id, row.mrr, SERIES_COLOUR) for row in rep.aggregate[:10]],
                     title="attribution ranking (MRR)", plot_id="ranking")
    methods = ", ".join(rep.methods)
    ov, rho = rep.agreement.mean_overlap, rep.agreement.mean_spearman
    agree_txt = ("only one method ran" if ov is None else
                 f"overlap@{rep.top_k} {ov:.2f}" + (
                     "" if rho is None else f", Spearman {rho:.2f}"))
    trust = "" if rep.trust is None else (
        f'<p class="trust-{escape(rep.trust.level)}">{escape(rep.trust.describe())}</p>')
    return (f"<p>Primary method <b>{escape(rep.primary_method)}</b> over "
            f"{len(rep.exemplars)} exemplars ({escape(rep.aggregation)})."
            f" Methods: {escape(methods)}. Method agreement: {escape(agree_txt)}.</p>{trust}"
            f"<figure>{bars}</figure><table>{head}{''.join(rows)}</table>")


def _verification(r: ReportInputs) -> str:
    rep = r.incident.attribution
    v = rep.verification if isinstance(rep, AttributedReport) else None
    if v is None:
        return '<p class="note">Behavioural verification was not run.</p>'
    if isinstance(v, VerificationFailure):
        return f'<p class="bad">Verification failed: {escape(v.error)}</p>'
    bars = bar_chart([("unlearn top-k", v.top_k.effect, SERIES_COLOUR),
                      ("unlearn k random", v.random.effect, REFERENCE_COLOUR)],
                     title="behavioural effect", plot_id="verification")
    verdict = ('<span class="ok">supports the attribution</span>' if v.supports_attribution
               else '<span class="bad">does not support the attribution</span>')
    how = ("Retraining the adapter without the top-k attributed examples vs without k random "
           "ones" if v.method == "lora_retrain" else
           "Gradient ascent on the top-k attributed examples vs k random ones")
    return (f"<p>{how} ({escape(v.method)}); effect = "
            "drop of the drifted exemplars' mean per-token log-likelihood (nats). "
            f"Before: {v.loglik_before:.3f}. Ratio "
            f"{'n/a' if v.ratio is None else f'{v.ratio:.2f}'}: {verdict}.</p>"
            f"<figure>{bars}</figure>")


def render_report(r: ReportInputs, *, title: str | None = None) -> str:
    """The report as one HTML string (module docstring)."""
    inc = r.incident
    head = title or f"Drift incident {inc.id}: {inc.model}@{inc.model_version} {inc.segment}"
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in r.notes)
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(head)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(head)}</h1>{notes}"
        f"<h2>Incident</h2>{_header(r)}"
        f"<h2>Facets: every segment, signal and detector that saw it</h2>{_facets(r)}"
        f"<h2>Drifted signals</h2>{_signals(r)}"
        f"<h2>Embedding drift</h2>{_embedding(r)}"
        f"<h2>Exemplars (most drifted outputs)</h2>{_exemplars(r)}"
        f"<h2>Attribution: training examples most responsible</h2>{_attribution(r)}"
        f"<h2>Behavioural verification</h2>{_verification(r)}"
        "<p class=\"note\">Generated by driftscope; self-contained (no scripts, no network)."
        "</p></body></html>"
    )
