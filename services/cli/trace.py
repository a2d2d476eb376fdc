"""``driftscope trace`` (attribute any prompt/output pair) and ``driftscope attribute ID``
(re-run or extend an incident's attribution with other indexes)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.cli.options import quiet_transformers
from driftscope_llm.services.errors import ConfigError

if TYPE_CHECKING:
    from driftscope_llm.services.store.base import StateStore
    from driftscope_llm.services.store.model import Incident
    from driftscope_llm.services.store.attribution_report import AttributedReport
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


def _render(rep: AttributedReport, as_json: bool, corpus: Path | None) -> None:
    """Print ``rep`` as one JSON line, or for a person."""
    from driftscope_llm.services.cli.render import print_report

    if as_json:
        sys.stdout.write(rep.model_dump_json() + "\n")
        return
    texts: dict[str, str] = {}
    if corpus is not None:
        from driftscope_llm.attribution.data import load_corpus

        texts = {e.id: f"{e.prompt} → {e.response}" for e in load_corpus(corpus)}
    print_report(Console(), rep, texts)


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
    _render(report, as_json, corpus)


@friendly_errors
def attribute_cmd(
    incident_id: Annotated[str, typer.Argument(help="Incident id (driftscope incidents list).")],
    config: Annotated[Path, typer.Option("--config", "-c", help="The worker's YAML settings "
                                         "(models and their indexes).", exists=True,
                                         dir_okay=False)],
    index: Annotated[list[str] | None, typer.Option(help="Extra index (DIR or METHOD=DIR) to "
                                                    "run besides the configured ones.")] = None,
    corpus: Annotated[Path | None, typer.Option(help="Corpus JSONL, to print example texts.",
                                                exists=True, dir_okay=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON line.")] = False,
) -> None:
    """Re-run an incident's attribution now (or extend it with more indexes) and store it."""

    from driftscope_llm.services.cli.options import open_command_store
    from driftscope_llm.services.config import WorkerSettings, load_settings
    from driftscope_llm.services.errors import NotFoundError
    from driftscope_llm.services.worker.job import Attributor
    from driftscope_llm.services.worker.settings import find_target

    s = load_settings(WorkerSettings, config)
    store = open_command_store(s.redis)
    incident: Incident = store.get_incident(incident_id)
    found = find_target(s.models, incident.model, incident.model_version)
    if found is None:
        raise NotFoundError("model target for", f"{incident.model}@{incident.model_version}")
    key, target = found
    if index:
        target = _extended(target, _parse_indexes(index))
    quiet_transformers()
    with Console(stderr=True).status(f"attributing {incident_id} …"):
        report = Attributor(device=s.device).run(incident, key, target)
    _store_report(store, incident_id, report)
    _render(report, as_json, corpus)


def _extended(target: ModelTarget, extra: dict[str, Path]) -> ModelTarget:
    return target.model_copy(update={"indexes": {**target.indexes, **extra}})


def _store_report(store: StateStore, incident_id: str, report: AttributedReport) -> None:
    """Store the report atomically with the incident. An incident still awaiting its report
    (open, attributing, failed) moves through ``attributing`` to ``attributed``, as the
    lifecycle allows; one already attributed, acknowledged or resolved keeps its state."""
    from driftscope_llm.services.store.lifecycle import advance, can_advance
    from driftscope_llm.services.store.model import IncidentState

    at = datetime.now(UTC)

    def store_it(incident: Incident) -> None:
        incident.attribution = report
        if incident.state is not IncidentState.ATTRIBUTING and can_advance(
                incident.state, IncidentState.ATTRIBUTING):
            advance(incident, IncidentState.ATTRIBUTING, at, "re-run from the CLI")
        if incident.state is IncidentState.ATTRIBUTING:
            advance(incident, IncidentState.ATTRIBUTED, at)

    store.update_incident(incident_id, store_it)
