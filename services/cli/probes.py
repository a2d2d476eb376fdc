"""``driftscope probes corpus|perturb``: write probe suites for ``driftscope regress``.

``corpus`` samples a fine-tuning corpus stratified by its label or a metadata field;
``perturb`` adds seeded variations of every probe of a suite (paraphrase templates, casing,
punctuation, added context). Suites from an incident come from ``driftscope incidents probes``.
See ``docs/regression.md``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from driftscope_llm.services.cli.errors import friendly_errors

__all__ = ["register"]

probes_app = typer.Typer(help="Write probe suites (JSONL: id, prompt) for 'driftscope regress'.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(probes_app, name="probes")


def _done(n: int, out: Path, as_json: bool) -> None:
    from driftscope_llm.services.textsafety import terminal

    if as_json:
        sys.stdout.write(json.dumps({"out": str(out), "probes": n}) + "\n")
    else:
        Console(stderr=True).print(f"{n} probes -> {terminal(str(out))}", highlight=False)


@probes_app.command("corpus")
@friendly_errors
def corpus_cmd(
    corpus: Annotated[Path, typer.Argument(help="Fine-tuning corpus (JSONL: id, prompt, "
                                                "response, label?, metadata?).",
                                           exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option(help="Write the suite (JSONL) here.", dir_okay=False)],
    by: Annotated[str, typer.Option(help="Stratify by this field: 'label' or a metadata "
                                         "key.")] = "label",
    per_stratum: Annotated[int, typer.Option(min=1, help="Prompts per stratum.")] = 10,
    perturb: Annotated[bool, typer.Option(help="Add seeded perturbations of every probe.")]
    = False,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the perturbations.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One summary object on stdout.")]
    = False,
) -> None:
    """A stratified sample of a corpus's prompts: the same number from every stratum."""
    from driftscope_llm.attribution.data import load_corpus
    from driftscope_llm.services.regress.probes import perturb as add_variants
    from driftscope_llm.services.regress.probes import stratified_sample, write_suite

    rows = []
    for e in load_corpus(corpus):
        value = e.field_value(by)
        rows.append((e.id, e.prompt, "(none)" if value is None else str(value)))
    probes = stratified_sample(rows, per_stratum, seed=seed)
    if perturb:
        probes = add_variants(probes, seed=seed)
    _done(write_suite(out, probes), out, as_json)


@probes_app.command("perturb")
@friendly_errors
def perturb_cmd(
    suite: Annotated[Path, typer.Argument(help="Probe suite (JSONL).", exists=True,
                                          dir_okay=False)],
    out: Annotated[Path, typer.Option(help="Write the varied suite here.", dir_okay=False)],
    kinds: Annotated[str, typer.Option(help="Comma-separated: paraphrase, casing, "
                                            "punctuation, context.")]
    = "paraphrase,casing,punctuation,context",
    per_kind: Annotated[int, typer.Option(min=1, max=10,
                                          help="Variants per kind and probe.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the perturbations.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One summary object on stdout.")]
    = False,
) -> None:
    """The suite's probes followed by seeded variations of each (ids '<id>~<kind><n>')."""
    from driftscope_llm.services.regress.probes import perturb, read_suite, write_suite

    names = [k.strip() for k in kinds.split(",") if k.strip()]
    varied = perturb(read_suite(suite), names, per_kind=per_kind, seed=seed)
    _done(write_suite(out, varied), out, as_json)
