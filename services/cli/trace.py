"""``driftscope trace`` (attribute any prompt/output pair) and ``driftscope attribute ID``
(attribute an incident now, through the worker's own path; re-run or extend it with other
indexes)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.cli.options import quiet_transformers
from driftscope_llm.services.cli.render import WideOpt, command_console, escape_text
from driftscope_llm.services.errors import ConfigError

if TYPE_CHECKING:
    from driftscope_llm.services.store.attribution_report import AttributedReport
    from driftscope_llm.services.store.model import Incident
    from driftscope_llm.services.worker.service import Attempt
    from driftscope_llm.services.worker.settings import ModelTarget

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("trace")(trace_cmd)
    app.command("attribute")(attribute_cmd)


def _parse_indexes(specs: list[str]) -> dict[str, Path]:
    """``METHOD=DIR`` or ``DIR`` (method from the index manifest) → {method: dir}."""
    out: dict[str, Path] = {}
    for spec in specs:
        method, sep, path = spec.partition("=")
        if not sep:
            from driftscope_llm.attribution.errors import IndexError_
            from driftscope_llm.attribution.index.manifest import read_manifest

            path = spec
            try:
                method = read_manifest(Path(path)).attribution_settings().method
            except (OSError, IndexError_):
                raise ConfigError(f"{path} is not an index directory (no readable manifest); "
                                  "build one with `driftscope attribution index build`",
                                  path=str(Path(path) / "manifest.json")) from None
        out[method] = Path(path)
    return out


def _render(rep: AttributedReport, as_json: bool, corpus: Path | None, wide: bool) -> None:
    """Print ``rep`` as one JSON line, or for a person (texts in full with ``wide``)."""
    from driftscope_llm.services.cli.render import print_report

    if as_json:
        sys.stdout.write(rep.model_dump_json() + "\n")
        return
    texts: dict[str, str] = {}
    if corpus is not None:
        from driftscope_llm.attribution.data import load_corpus

        texts = {e.id: f"{e.prompt} → {e.response}" for e in load_corpus(corpus)}
    print_report(command_console(wide=wide, highlight=True), rep, texts,
                 text_width=None if wide else 80)


@friendly_errors
def trace_cmd(
    model: Annotated[Path, typer.Option(help="Fine-tuned Hugging Face causal-LM directory.",
                                        exists=True, file_okay=False)],
    index: Annotated[list[str], typer.Option(help="Index directory, or METHOD=DIR; repeat to "
                                             "compare methods (the first drives the ranking).")],
    output: Annotated[str, typer.Option(help="The production output to explain.")],
    prompt: Annotated[str, typer.Option(help="The prompt that produced it.")] = "",
    adapter: Annotated[Path | None, typer.Option(help="PEFT (LoRA) adapter directory.",
                                                 exists=True, file_okay=False)] = None,
    corpus: Annotated[Path | None, typer.Option(help="Corpus JSONL, to print example texts.",
                                                exists=True, dir_okay=False)] = None,
    top_k: Annotated[int, typer.Option(min=1, help="How many training examples.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON line.")] = False,
    wide: WideOpt = False,
) -> None:
    """Attribute one prompt/output pair to the fine-tuning examples most responsible for it."""
    from driftscope_llm.services.store.model import Exemplar, Incident
    from driftscope_llm.services.worker.job import Attributor
    from driftscope_llm.services.worker.settings import ModelTarget

    indexes = _parse_indexes(index)
    now = datetime.now(UTC)
    incident = Incident(
        id="trace", opened_at=now, updated_at=now, model="trace", model_version="trace",
        segment="trace", signal="trace", detector="trace", statistic=0.0, threshold=0.0,
        effect_size=0.0, event_id="trace",
        exemplars=[Exemplar(event_id="query", prompt=prompt, output=output)])
    target = ModelTarget(model_dir=model, adapter_dir=adapter, indexes=indexes, top_k=top_k,
                         default_method=next(iter(indexes)))
    quiet_transformers()
    with Console(stderr=True).status("attributing …"):
        report = Attributor().run(incident, "trace", target)
    _render(report, as_json, corpus, wide)


@friendly_errors
def attribute_cmd(
    incident_id: Annotated[str, typer.Argument(
        help="Incident id (driftscope incidents list), or a unique prefix of one.")],
    config: Annotated[Path, typer.Option("--config", "-c", help="The worker's YAML settings "
                                         "(models and their indexes, kafka, webhooks).",
                                         exists=True, dir_okay=False)],
    index: Annotated[list[str] | None, typer.Option(help="Extra index (DIR or METHOD=DIR) to "
                                                    "run besides the configured ones.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-run an incident that is already "
                                        "attributed (or resolved without a report).")] = False,
    corpus: Annotated[Path | None, typer.Option(help="Corpus JSONL, to print example texts.",
                                                exists=True, dir_okay=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON line.")] = False,
    wide: WideOpt = False,
) -> None:
    """Attribute an incident now, exactly as the worker does: take its job lease, run the job,
    store the report, publish the AttributionEvent and send the incident.attributed webhook.

    A failed incident is tried again; an attributed one is left alone (its report is shown)
    unless --force. Exit 2 when the job fails (the failure is stored and announced too).
    """
    from driftscope_llm.services.cli.options import open_command_store
    from driftscope_llm.services.config import WorkerSettings, load_settings
    from driftscope_llm.services.deployables import build_worker
    from driftscope_llm.services.errors import NotFoundError
    from driftscope_llm.services.store.lifecycle import Rerun
    from driftscope_llm.services.store.lookup import resolve_incident_id
    from driftscope_llm.services.worker.settings import find_target

    s = load_settings(WorkerSettings, config)
    store = open_command_store(s.redis)
    incident_id = resolve_incident_id(store, incident_id)
    incident: Incident = store.get_incident(incident_id)
    found = find_target(s.models, incident.model, incident.model_version)
    if found is None:  # a wrong config file: nothing stored, nothing announced
        raise NotFoundError("model target for", f"{incident.model}@{incident.model_version}")
    key, target = found
    if index:
        s = s.model_copy(update={"models": {**s.models,
                                           key: _extended(target, _parse_indexes(index))}})
    quiet_transformers()
    built = build_worker(s, store=store)
    try:
        with Console(stderr=True).status(f"attributing {escape_text(incident_id)} …"):
            attempt = built.component.attribute(
                incident_id, rerun=Rerun.ALWAYS if force else Rerun.FAILED)
    finally:
        built.close()  # the AttributionEvent is flushed already; this delivers the webhook
    _finish(incident_id, attempt, as_json, corpus, wide)


def _extended(target: ModelTarget, extra: dict[str, Path]) -> ModelTarget:
    return target.model_copy(update={"indexes": {**target.indexes, **extra}})


def _finish(incident_id: str, attempt: Attempt, as_json: bool, corpus: Path | None,
            wide: bool) -> None:
    """Show what :meth:`Worker.attribute` did: the report, or why there is none."""
    from driftscope_llm.services.errors import AttributionError, NotFoundError
    from driftscope_llm.services.store.attribution_report import AttributedReport, FailedReport
    from driftscope_llm.services.worker.service import Outcome

    if attempt.outcome is Outcome.LEASE_LOST:
        raise AttributionError(f"incident {incident_id}: the job outlived its lease (paused "
                               "past lease_ttl_s); its report was not stored; run it again")
    inc = attempt.incident
    if inc is None:  # deleted (purged, expired) meanwhile
        raise NotFoundError("incident", incident_id)
    if attempt.outcome is Outcome.KEPT and isinstance(attempt.report, FailedReport):
        raise AttributionError(f"incident {incident_id}: the re-run failed "
                               f"({attempt.report.reason}); its earlier report is kept")
    report = inc.attribution
    if isinstance(report, FailedReport):
        raise AttributionError(f"incident {incident_id} failed: {report.reason}")
    if attempt.outcome is Outcome.DONE:
        what = ("is already attributed" if report is not None
                else f"is {inc.state.value} without a report")
        Console(stderr=True, highlight=False).print(
            f"{escape_text(incident_id)} {what}; --force runs it again")
    if isinstance(report, AttributedReport):
        _render(report, as_json, corpus, wide)
