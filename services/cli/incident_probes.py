"""``driftscope incidents probes ID``: turn an incident into a probe suite for ``regress``.

The suite holds the incident's drifted prompts and their nearest prompts in the fine-tuning
corpus and in the reference traffic (:mod:`driftscope_llm.services.regress.incident_probes`),
optionally with seeded perturbations (:func:`driftscope_llm.services.regress.probes.perturb`).
It is written as JSONL (``--out``) for the user to keep under version control; the command
prints a summary on stderr, or with ``--json`` one object on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from driftscope_llm.services.cli.errors import friendly_errors

if TYPE_CHECKING:
    from driftscope_llm.services.store.model import Incident

__all__ = ["register_probes"]


def register_probes(incidents_app: typer.Typer) -> None:
    incidents_app.command("probes")(probes_cmd)


@friendly_errors
def probes_cmd(
    incident_id: Annotated[str, typer.Argument(
        help="Incident id, or a unique prefix of one (whole with --incident-file).")],
    out: Annotated[Path, typer.Option(help="Write the suite (JSONL) here.", dir_okay=False)],
    corpus: Annotated[Path | None, typer.Option(
        help="Fine-tuning corpus (JSONL: id, prompt, response) to draw neighbours from.",
        exists=True, dir_okay=False)] = None,
    traffic: Annotated[Path | None, typer.Option(
        help="Production events (OutputEvent JSONL); prompts of the incident's segment that an "
             "earlier version of its model answered are the reference traffic.",
        exists=True, dir_okay=False)] = None,
    neighbours: Annotated[int, typer.Option(min=0, max=50, help="Nearest prompts per exemplar "
                                                                "from each source.")] = 3,
    perturb: Annotated[bool, typer.Option(help="Add seeded perturbations of every probe.")]
    = False,
    per_kind: Annotated[int, typer.Option(min=1, max=10,
                                          help="Perturbations per kind and probe.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the perturbations.")] = 0,
    incident_file: Annotated[Path | None, typer.Option(
        help="Read the incident from this JSON file (as 'incidents show --json' prints it) "
             "instead of Redis.", exists=True, dir_okay=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One summary object on stdout.")]
    = False,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML settings (redis); DRIFTSCOPE_* variables override it.",
        exists=True, dir_okay=False)] = None,
) -> None:
    """Write a probe suite for an incident: its drifted prompts and their neighbours."""
    from driftscope_llm.attribution.data import load_corpus
    from driftscope_llm.services.regress.incident_probes import Candidate, incident_suite
    from driftscope_llm.services.regress.probes import perturb as add_variants
    from driftscope_llm.services.regress.probes import write_suite
    from driftscope_llm.services.report import read_events
    from driftscope_llm.services.textsafety import terminal

    inc = _incident(incident_id, incident_file, config)
    pool_corpus = [Candidate(e.id, e.prompt) for e in load_corpus(corpus)] if corpus else []
    pool_traffic: list[Candidate] = []
    if traffic is not None:
        seen: set[str] = set()
        for ev in read_events(traffic):
            same_segment = inc.segment in ("all", *ev.segment.values())
            if (ev.model == inc.model and ev.model_version != inc.model_version
                    and same_segment and ev.prompt and ev.prompt not in seen):
                seen.add(ev.prompt)
                pool_traffic.append(Candidate(ev.event_id, ev.prompt))
    probes = incident_suite(inc, corpus=pool_corpus, traffic=pool_traffic, k=neighbours)
    if perturb:
        probes = add_variants(probes, per_kind=per_kind, seed=seed)
    n = write_suite(out, probes)
    counts: dict[str, int] = {}
    for p in probes:
        key = (p.source or "").split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    if as_json:
        sys.stdout.write(json.dumps({"incident": inc.id, "out": str(out), "probes": n,
                                     "by_source": counts}) + "\n")
        return
    parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    Console(stderr=True).print(f"{n} probes for {terminal(inc.id)} ({terminal(parts)}) -> "
                               f"{terminal(str(out))}", highlight=False)


def _incident(incident_id: str, path: Path | None, config: Path | None) -> Incident:
    from driftscope_llm.services.errors import ConfigError, NotFoundError
    from driftscope_llm.services.store.model import Incident

    if path is None:
        from driftscope_llm.services.cli.incidents import _resolve, _store

        store = _store(config)
        return store.get_incident(_resolve(store, incident_id))
    try:
        inc = Incident.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"{path}: not an incident record ({str(exc).splitlines()[0]})",
                          path=str(path)) from exc
    if inc.id != incident_id:  # the file holds another incident
        raise NotFoundError("incident", f"{incident_id}' in '{path}")
    return inc
