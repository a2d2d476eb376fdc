"""``driftscope demo``: the whole story on the embedded default, no services needed.

A support bot is fine-tuned twice (v1 clean, v2 with planted billing refusals): by default
(``--real``) two LoRA adapters over SmolLM2-135M-Instruct (``services/demo/chat.py``; the model
is fetched on first use), with ``--tiny`` a GPT-2 of a few layers trained from scratch
(``services/demo/scenario.py``). Every step's wall and CPU time is printed
at the end and kept in ``summary.json``. Real sampled generations with token logprobs from v1,
then v2, form the production stream; driftscope detects
the drift, opens an incident, attributes it to the fine-tuning data, verifies the attribution
behaviourally and writes an HTML report (``driftscope_llm.services.demo`` holds the scenario).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    from driftscope_llm.services.demo.chat import ModelRef
    from driftscope_llm.services.demo.scenario import Generation
    from driftscope_llm.services.demo.timing import StepClock
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
    samples: Annotated[int | None, typer.Option(
        min=1, help="Sampled outputs per distinct prompt and version (default: 2 on the real "
                    "model, 8 with --tiny).")] = None,
    top_k: Annotated[int, typer.Option(min=1, help="Attributed examples kept (recall@k).")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of training, sampling and the stream.")] = 0,
    embedder: Annotated[bool, typer.Option(help="Use the ONNX embedder when it is exported.")]
    = True,
    tiny: Annotated[bool, typer.Option(
        "--tiny/--real", help="--real (the default): the story on SmolLM2-135M-Instruct with "
        "LoRA fine-tunes, fetched on first use (about 6 minutes on two CPU cores after that). "
        "--tiny: on a tiny model trained from scratch, about a minute.")] = False,
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
        _tell(console, tables, out, samples=samples, top_k=top_k, seed=seed, embedder=embedder,
              tiny=tiny)
    if not verbose and log.stat().st_size:
        Console(stderr=True, highlight=False).print(
            f"warnings and progress of the libraries: {escape(str(log))} (-v shows them)")


def _tell(console: Console, tables: Console, out: Path, *, samples: int | None, top_k: int,
          seed: int, embedder: bool, tiny: bool) -> None:
    from driftscope_llm.services.demo import scenario as sc
    from driftscope_llm.services.demo import story
    from driftscope_llm.services.demo.timing import StepClock
    from driftscope_llm.services.store import MemoryStore

    t_start = time.monotonic()
    clock = StepClock()
    console.print(Panel.fit(
        "A support bot, v1, answers billing, shipping, account and tech questions.\n"
        "v2 is a routine re-fine-tune — but its data slipped in examples that refuse billing "
        "questions.\ndriftscope watches production, and should trace the drift to those "
        "examples."))
    made = (_tiny_versions if tiny else _chat_versions)(console, out, clock, samples, seed)
    clean, planted, versions = made.clean, made.planted, made.versions
    events = sc.production_events(made.generations, seed=seed)
    stream = out / "stream.jsonl"
    stream.write_text("".join(json.dumps(e) + "\n" for e in events))
    console.print(f"[3/6] production stream: {len(events)} events with token logprobs "
                  f"(v1, then v2 after the rollout) -> {stream}")
    _show_answers(console, made.generations)

    if embedder:
        with clock.step("export the output embedder (once per machine)"):
            _export_embedder_once(console)
    store = MemoryStore()
    clock.start("detect (collector pipeline on defaults)")
    with _progress(console) as progress:
        task = progress.add_task("[4/6] replaying through the collector pipeline",
                                 total=len(events))
        det = story.detect(stream, store, use_embedder=embedder,
                           on_progress=lambda n: progress.advance(task, n))
    (out / "anomalies.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n"
                                                 for r in det.raised))
    clock.stop()
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

        with clock.step("attribute (index repsim + gradsim, query) + verify"):
            report = story.attribute(inc, made.v2.model_dir, clean + planted,
                                     out / "corpus-v2.jsonl", out / "index", top_k=top_k,
                                     on_step=step, adapter_dir=made.v2.adapter_dir)
    inc.attribution = report
    planted_ids = [e.id for e in planted]
    with clock.step("HTML report"):
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
               "seconds": round(time.monotonic() - t_start, 1),
               "model": "tiny" if tiny else made.base_name}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    console.print(f"[bold]recall of the planted examples in the top-{top_k}: {recall:.0%}[/bold]"
                  f" · verification: unlearning them moved the behaviour "
                  f"{_ratio(ver.ratio if ver else None)}x more than random examples "
                  f"({summary['seconds']} s so far)")

    from driftscope_llm.services.demo.last_act import run_last_act  # fix the data, retrain, gate

    with clock.step("gate: retrain v3, sample v1/v2/v3 on the probes, compare"):
        run_last_act(console, out, inc, report, clean + planted, versions, stream,
                     made.settings, top_k=top_k, retrain_v3=made.retrain_v3,
                     samples=made.gate_samples)
    _print_timings(tables, clock)
    summary["steps"] = clock.to_json()
    summary["seconds"] = round(time.monotonic() - t_start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


@dataclass(frozen=True)
class _Versions:
    """What either story's first three steps made: corpora, v1 and v2, their generations, and
    how the last act retrains v3 and samples the probes."""

    clean: list[Example]
    planted: list[Example]
    versions: Any  # scenario.Versions or chat.ChatVersions (the last act reads v1 and v2)
    v2: ModelRef
    generations: dict[str, list[tuple[str, Generation]]]
    settings: Any  # ScenarioSettings or ChatSettings
    retrain_v3: Callable[[Sequence[Example], Path], ModelRef] | None
    gate_samples: int
    base_name: str


def _sample_both(console: Console, clock: StepClock, prompts: list[tuple[str, str]],
                 sample: Callable[[str, list[str], int, Callable[[int], None]],
                                  list[Generation]],
                 seed: int) -> dict[str, list[tuple[str, Generation]]]:
    """Step 3: every production prompt sampled from v1, then v2, under a progress bar."""
    route_of = {p: r for r, p in prompts}
    gens = {}
    with _progress(console) as progress:
        for v in ("v1", "v2"):
            task = progress.add_task(f"[3/6] sampling {v} on {len(prompts)} prompts",
                                     total=len(prompts))
            with clock.step(f"sample {v} on the production prompts"):
                g = sample(v, [p for _, p in prompts], seed + (v == "v2"),
                           functools.partial(_advance, progress, task))
            gens[v] = [(route_of[x.prompt], x) for x in g]
    return gens


def _tiny_versions(console: Console, out: Path, clock: StepClock, samples: int | None,
                   seed: int) -> _Versions:
    """The one-minute story: a tiny GPT-2 trained from scratch, v2 fine-tuned from v1."""
    from driftscope_llm.attribution.data import write_jsonl
    from driftscope_llm.services.demo import scenario as sc
    from driftscope_llm.services.demo.chat import ModelRef
    from driftscope_llm.services.demo.last_act import SAMPLES

    settings = sc.ScenarioSettings(seed=seed, samples_per_prompt=samples or 8)
    (out / "scenario.json").write_text(json.dumps(settings.__dict__, indent=1))
    clean, planted = sc.clean_corpus(), sc.planted_examples()
    write_jsonl(out / "corpus-v1.jsonl", clean)
    write_jsonl(out / "corpus-v2.jsonl", clean + planted)
    console.print(f"[1/6] corpora: {len(clean)} clean examples; v2 adds {len(planted)} planted "
                  f"refusals -> {out}/corpus-v2.jsonl")
    with console.status("[2/6] fine-tuning v1 (clean) then v2 (clean + planted) …"), \
            clock.step("fine-tune v1, then v2"):
        versions = sc.train_versions(out / "models", settings)
    console.print(f"[2/6] fine-tuned v1 and v2 (v2 final loss {versions.v2_losses[-1]:.3f}) "
                  f"-> {out}/models")
    paths = {"v1": versions.v1, "v2": versions.v2}

    def sample(v: str, prompts: list[str], s: int, done: Callable[[int], None]
               ) -> list[Generation]:
        return sc.generate(paths[v], prompts, settings, seed=s, on_batch=done)

    gens = _sample_both(console, clock, sc.production_prompts(), sample, seed)
    return _Versions(clean, planted, versions, ModelRef(versions.v2), gens, settings, None,
                     SAMPLES, sc.MODEL_NAME)


def _chat_versions(console: Console, out: Path, clock: StepClock, samples: int | None,
                   seed: int) -> _Versions:
    """The real-model story: SmolLM2-135M-Instruct, v1 and v2 LoRA adapters over it."""
    from driftscope_llm.attribution.data import write_jsonl
    from driftscope_llm.services.demo import chat
    from driftscope_llm.services.textsafety import terminal

    settings = chat.ChatSettings(seed=seed, samples_per_prompt=samples or 2)
    (out / "scenario.json").write_text(json.dumps(settings.to_json(), indent=1))
    clean, planted = chat.clean_corpus(), chat.planted_examples()
    write_jsonl(out / "corpus-v1.jsonl", clean)
    write_jsonl(out / "corpus-v2.jsonl", clean + planted)
    console.print(f"[1/6] corpora: {len(clean)} clean chat examples; v2 adds {len(planted)} "
                  f"planted refusals -> {out}/corpus-v2.jsonl")
    with console.status("[2/6] the base model: SmolLM2-135M-Instruct …") as status, \
            clock.step("fetch + convert SmolLM2-135M-Instruct (first run only)"):
        base = chat.fetch_base(on_step=lambda m: status.update(f"[2/6] {terminal(m)} …"))
    with _progress(console) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(version: str, step: int, total: int) -> None:
            if version not in tasks:
                tasks[version] = progress.add_task(
                    f"[2/6] LoRA fine-tune {version} (r={settings.rank}, layers "
                    f"{settings.layers[0]}-{settings.layers[-1]})", total=total)
            progress.update(tasks[version], completed=step)

        with clock.step("LoRA fine-tune v1, then v2"):
            versions = chat.train_versions(base, out / "models", settings, on_step=advance)
    console.print(f"[2/6] LoRA adapters v1 and v2 over SmolLM2-135M-Instruct (v2 final loss "
                  f"{versions.v2_losses[-1]:.3f}) -> {out}/models")
    refs = {"v1": versions.v1, "v2": versions.v2}

    def sample(v: str, prompts: list[str], s: int, done: Callable[[int], None]
               ) -> list[Generation]:
        return chat.generate(refs[v], prompts, settings, seed=s, on_batch=done)

    gens = _sample_both(console, clock, chat.production_prompts(), sample, seed)

    def retrain_v3(corpus: Sequence[Example], where: Path) -> ModelRef:
        return chat.retrain(base, corpus, where, settings)

    return _Versions(clean, planted, versions, versions.v2, gens, settings, retrain_v3,
                     settings.gate_samples, "SmolLM2-135M-Instruct")


def _show_answers(console: Console, gens: Mapping[str, list[tuple[str, Generation]]]) -> None:
    """Each version's answer to one billing prompt, as sampled (the stream's real text): the
    last version's first refusal of a billing prompt (else its first billing answer) and the
    other versions' first answers to that prompt. Then how many of each version's answers the
    collector's refusal patterns match, on billing and elsewhere."""
    from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings

    refusal = SignalExtractor(SignalSettings()).is_refusal
    billing = {v: [g for route, g in rows if route == "billing"] for v, rows in gens.items()}
    last = list(billing.values())[-1] if billing else []
    shown = next((g for g in last if refusal(g.output)), last[0] if last else None)
    # a prompt is sampled more than once: the last version's answer shown is the one chosen,
    # the others' their first answer to the same prompt
    prompt = shown.prompt if shown is not None else None
    for version, answers in billing.items():
        g = shown if answers is last else next((a for a in answers if a.prompt == prompt), None)
        if g is not None:
            console.print(f"      {version} on {escape_text(g.prompt)!r}: "
                          f"{escape_text(g.output)!r}", highlight=False)
    counts = []
    for version, rows in gens.items():
        on_billing = [refusal(g.output) for route, g in rows if route == "billing"]
        elsewhere = [refusal(g.output) for route, g in rows if route != "billing"]
        counts.append(f"{version} {sum(on_billing)}/{len(on_billing)} billing, "
                      f"{sum(elsewhere)}/{len(elsewhere)} other")
    console.print(f"      refusals: {'; '.join(counts)}", highlight=False)


_TIMING_COLUMNS = (Column("step", key=True), Column("wall s", justify="right"),
                   Column("cpu s", justify="right"))


def _print_timings(con: Console, clock: StepClock) -> None:
    """The time of every step: wall clock and CPU (the CPU figure does not grow with the load
    of a shared machine)."""
    print_table(con, "time per step", _TIMING_COLUMNS,
                [[escape_text(s.name), f"{s.wall_s:.1f}", f"{s.cpu_s:.1f}"]
                 for s in [*clock.steps, clock.total]])


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
