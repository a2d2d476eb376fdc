"""``driftscope demo``: the whole story on the embedded default, no services needed.

A tiny support bot is fine-tuned twice (v1 clean, v2 with planted billing refusals); real sampled
generations with token logprobs from v1, then v2, form the production stream; driftscope detects
the drift, opens an incident, attributes it to the fine-tuning data, verifies the attribution
behaviourally and writes an HTML report (``driftscope_llm.services.demo`` holds the scenario).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.cli.options import quiet_transformers
from driftscope_llm.services.cli.render import (
    INCIDENT_COLUMNS,
    Column,
    WideOpt,
    command_console,
    escape_text,
    incident_row,
    print_table,
)
from driftscope_llm.services.store.attribution_report import AttributedReport, Verification

if TYPE_CHECKING:
    from driftscope_llm.attribution.data import Example
    from driftscope_llm.services.store.model import Incident

__all__ = ["LIBRARY_LOG", "print_attribution", "print_incidents", "register"]

LIBRARY_LOG = "library-output.log"
"""Where the demo keeps what torch, transformers and the ONNX exporter print (``-v``: shown)."""


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)


def _progress(console: Console) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=console)


@friendly_errors
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Directory for the models, stream, indexes and "
                                           "report.")] = Path("demo-out"),
    samples: Annotated[int, typer.Option(min=4, help="Sampled outputs per distinct prompt and "
                                                     "version.")] = 8,
    top_k: Annotated[int, typer.Option(min=1, help="Attributed examples kept (recall@k).")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of training, sampling and the stream.")] = 0,
    embedder: Annotated[bool, typer.Option(help="Use the ONNX embedder when it is exported.")]
    = True,
    wide: WideOpt = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help=f"Show the libraries' own warnings and progress (torch, "
                                f"transformers, the ONNX exporter) instead of keeping them in "
                                f"{LIBRARY_LOG} in --out.")] = False,
) -> None:
    """Simulate a support bot whose v2 fine-tune starts refusing billing questions; catch it,
    trace it to the planted training examples, verify, and write report.html to --out."""
    from driftscope_llm.services.demo.library_output import library_output

    quiet_transformers()
    out.mkdir(parents=True, exist_ok=True)
    log = out / LIBRARY_LOG
    with library_output(log, show=verbose) as terminal:  # the story alone on the terminal
        console = Console(file=terminal)
        tables = command_console(wide=wide, stderr=True, highlight=True)
        tables.file = terminal
        _tell(console, tables, out, samples=samples, top_k=top_k, seed=seed, embedder=embedder)
    if not verbose and log.stat().st_size:
        Console(stderr=True, highlight=False).print(
            f"warnings and progress of the libraries: {escape(str(log))} (-v shows them)")


def _tell(console: Console, tables: Console, out: Path, *, samples: int, top_k: int, seed: int,
          embedder: bool) -> None:
    from driftscope_llm.attribution.data import write_jsonl
    from driftscope_llm.services.demo import scenario as sc
    from driftscope_llm.services.demo import story
    from driftscope_llm.services.store import MemoryStore

    t_start = time.monotonic()
    settings = sc.ScenarioSettings(seed=seed, samples_per_prompt=samples)
    (out / "scenario.json").write_text(json.dumps(settings.__dict__, indent=1))
    console.print(Panel.fit(
        "A support bot, v1, answers billing, shipping, account and tech questions.\n"
        "v2 is a routine re-fine-tune — but its data slipped in examples that refuse billing "
        "questions.\ndriftscope watches production, and should trace the drift to those "
        "examples."))
    clean, planted = sc.clean_corpus(), sc.planted_examples()
    write_jsonl(out / "corpus-v1.jsonl", clean)
    write_jsonl(out / "corpus-v2.jsonl", clean + planted)
    console.print(f"[1/6] corpora: {len(clean)} clean examples; v2 adds {len(planted)} planted "
                  f"refusals -> {out}/corpus-v2.jsonl")
    with console.status("[2/6] fine-tuning v1 (clean) then v2 (clean + planted) …"):
        versions = sc.train_versions(out / "models", settings)
    console.print(f"[2/6] fine-tuned v1 and v2 (v2 final loss {versions.v2_losses[-1]:.3f}) "
                  f"-> {out}/models")
    prompts = sc.production_prompts()
    route_of = {p: r for r, p in prompts}
    gens = {}
    with _progress(console) as progress:
        for v, mdir in (("v1", versions.v1), ("v2", versions.v2)):
            task = progress.add_task(f"[3/6] sampling {v} on {len(prompts)} prompts",
                                     total=len(prompts))
            g = sc.generate(mdir, [p for _, p in prompts], settings, seed=seed + (v == "v2"),
                            on_batch=functools.partial(_advance, progress, task))
            gens[v] = [(route_of[x.prompt], x) for x in g]
    events = sc.production_events(gens, seed=seed)
    stream = out / "stream.jsonl"
    stream.write_text("".join(json.dumps(e) + "\n" for e in events))
    console.print(f"[3/6] production stream: {len(events)} events with token logprobs "
                  f"(v1, then v2 after the rollout) -> {stream}")

    if embedder:
        _export_embedder_once(console)
    store = MemoryStore()
    with _progress(console) as progress:
        task = progress.add_task("[4/6] replaying through the collector pipeline",
                                 total=len(events))
        det = story.detect(stream, store, use_embedder=embedder,
                           on_progress=lambda n: progress.advance(task, n))
    (out / "anomalies.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n"
                                                 for r in det.raised))
    print_incidents(tables, story.opened_incidents(det.raised, store))
    inc = story.pick_incident(det.raised, store)
    if inc is None:
        console.print("[red]no drift detected[/red]: nothing to attribute")
        raise typer.Exit(1)
    console.print(f"[4/6] investigating {inc.id}: {len(inc.facets)} facets, headline "
                  f"{escape(inc.signal)}/{escape(inc.detector)} on {escape(inc.segment)} "
                  f"({escape(inc.model)}@{escape(inc.model_version)}, {inc.severity})",
                  highlight=False)

    with _progress(console) as progress:
        task = progress.add_task("[5/6] attribution + verification", total=3)

        def step(name: str) -> None:
            progress.update(task, description=f"[5/6] {name}")
            progress.advance(task, 1)

        report = story.attribute(inc, versions.v2, clean + planted, out / "corpus-v2.jsonl",
                                 out / "index", top_k=top_k, on_step=step)
    inc.attribution = report
    planted_ids = [e.id for e in planted]
    story.write_report(out / "report.html", inc, stream, det.raised, clean + planted,
                       det.embedder)
    console.print(f"[6/6] report -> {out / 'report.html'} (incident JSON beside it)")
    print_attribution(tables, report, {e.id: e for e in clean + planted})
    recall = story.recall_at_k(report, top_k, planted_ids)
    ver = report.verification if isinstance(report.verification, Verification) else None
    summary = {"incident": inc.id, "segment": inc.segment, "signal": inc.signal,
               "recall_at_k": recall, "top_k": top_k, "planted": len(planted_ids),
               "verification_ratio": ver.ratio if ver else None,
               "supports_attribution": ver.supports_attribution if ver else None,
               "seconds": round(time.monotonic() - t_start, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    console.print(f"[bold]recall of the planted examples in the top-{top_k}: {recall:.0%}[/bold]"
                  f" · verification: unlearning them moved the behaviour "
                  f"{_ratio(ver.ratio if ver else None)}x more than random examples · "
                  f"{summary['seconds']}s")

    from driftscope_llm.services.demo.last_act import run_last_act  # fix the data, retrain, gate

    run_last_act(console, out, inc, report, clean + planted, versions, stream, settings,
                 top_k=top_k)


def _export_embedder_once(console: Console) -> None:
    """Export the output embedder now when it never was on this machine, under a status line
    (the exporter's own output goes where :func:`library_output` sends it); without the
    embedder-export extra the replay runs without the embedding signal and says so."""
    from driftscope_llm.services.collector.embedder import (
        default_embedder_dir,
        export_embedder,
        is_exported,
    )
    from driftscope_llm.services.collector.settings import EmbedderSettings
    from driftscope_llm.services.errors import MissingExtraError

    target = default_embedder_dir()
    if is_exported(target):
        return
    try:
        with console.status("[4/6] exporting the output embedder (once per machine, about a "
                            "minute) …"):
            export_embedder(target, quantize=EmbedderSettings().quantized)
    except MissingExtraError as exc:
        console.print(f"[4/6] embedding signal off: {escape(str(exc))}", highlight=False)


def _advance(progress: Progress, task: TaskID, n: int) -> None:
    progress.advance(task, n)


def _ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.1f}"


def print_incidents(con: Console, incidents: list[Incident]) -> None:
    """The demo's table of the incidents the replay opened: id, model, headline (never cut),
    severity, effect, facets."""
    print_table(con, "incidents opened", INCIDENT_COLUMNS, [incident_row(i) for i in incidents])


_ATTRIBUTION_COLUMNS = (Column("rank", key=True, justify="right"), Column("id", key=True),
                        Column("mrr", justify="right"), Column("response"))


def print_attribution(con: Console, report: AttributedReport,
                      corpus: Mapping[str, Example]) -> None:
    """The demo's table of the training examples most responsible, each with its response in
    full (wrapped below the id on a narrow terminal), then the methods' agreement."""
    print_table(con, f"training examples most responsible ({escape_text(report.primary_method)})",
                _ATTRIBUTION_COLUMNS,
                [[str(row.rank), escape_text(row.id), f"{row.mrr:.3f}",
                  escape_text(corpus[row.id].response if row.id in corpus else "")]
                 for row in report.aggregate])
    agree = report.agreement.mean_overlap
    if agree is not None:
        con.print(f"method agreement (repsim vs gradsim): overlap@k {agree:.2f}")
