"""``driftscope incidents report ID --html FILE``: a self-contained HTML incident report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.store.attribution_report import AttributedReport, FailedReport
from driftscope_llm.services.vocabulary import Signal

__all__ = ["register_report"]


def register_report(incidents_app: typer.Typer) -> None:
    incidents_app.command("report")(report_cmd)


@friendly_errors
def report_cmd(
    incident_id: Annotated[str, typer.Argument(help="Incident id, or a unique prefix of one.")],
    html: Annotated[Path, typer.Option("--html", help="Write the report to this file.",
                                       dir_okay=False)],
    events: Annotated[Path | None, typer.Option(
        help="The production stream (OutputEvent JSONL) to draw the signals over time; "
             "without it the report shows the reference and window summaries.",
        exists=True, dir_okay=False)] = None,
    corpus: Annotated[Path | None, typer.Option(
        help="Fine-tuning corpus (JSONL) for the attributed examples' text; default: the "
             "verification corpus named in the report, when readable.",
        exists=True, dir_okay=False)] = None,
    segment_label: Annotated[str, typer.Option(help="Segment label streams are split on.")]
    = "route",
    reference_n: Annotated[int, typer.Option(min=1, help="Events forming the reference when "
                                                         "the stream has one version.")] = 2000,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML settings (redis); DRIFTSCOPE_* variables override it.",
        exists=True, dir_okay=False)] = None,
) -> None:
    """Write one incident's report: signals against the reference, exemplars, attribution
    ranking with the training examples' text, method agreement and verification."""
    from driftscope_llm.attribution.data import load_corpus
    from driftscope_llm.services.cli.incidents import _resolve, _store
    from driftscope_llm.services.report import (
        ReportInputs,
        read_events,
        render_report,
        signal_series,
    )

    store = _store(config)
    inc = store.get_incident(_resolve(store, incident_id))
    inputs = ReportInputs(incident=inc)
    if events is not None:
        siblings = [i for i in store.list_incidents(model=inc.model, limit=500)
                    if i.model_version == inc.model_version and i.segment == inc.segment]
        signals = list(dict.fromkeys([inc.signal] + [i.signal for i in siblings
                                                     if i.signal != Signal.EMBEDDING]))
        inputs.series = signal_series(read_events(events), inc,
                                      [s for s in signals if s != Signal.EMBEDDING],
                                      segment_label=segment_label, reference_n=reference_n)
    src = corpus
    if src is None and inc.attribution is not None:
        src = _verification_corpus(inc.attribution)
    if src is not None:
        inputs.corpus = {e.id: e for e in load_corpus(src)}
    inputs.embedding_note = ("Embeddings are not kept with incidents, so this report has no "
                             "embedding picture (the demo's report draws one from the stream).")
    html.write_text(render_report(inputs))
    Console(stderr=True).print(f"report -> {html}")


def _verification_corpus(report: AttributedReport | FailedReport) -> Path | None:
    """The corpus the worker verified against, when the report names a readable one."""
    from driftscope_llm.services.store.attribution_report import Verification

    v = report.verification if isinstance(report, AttributedReport) else None
    if isinstance(v, Verification) and v.corpus is not None and Path(v.corpus).is_file():
        return Path(v.corpus)
    return None
