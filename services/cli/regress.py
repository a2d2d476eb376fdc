"""``driftscope regress``: the behavioural regression gate, for CI before a model ships.

Exit codes: 0 the candidate passes, 1 regression (a detector found a change of at least the
minimum effect), 2 a usage or input error (bad probe suite, model path, settings), 3 an endpoint
could not be reached or answered without logprobs. ``--json`` prints one object on stdout and
nothing else; progress goes to stderr. See ``docs/regression.md``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.cli.render import Column, WideOpt, command_console, print_table
from driftscope_llm.services.textsafety import terminal

if TYPE_CHECKING:
    from driftscope_llm.services.regress.gate import GateResult
    from driftscope_llm.services.regress.generation import GenerationSettings, Generator, Sample
    from driftscope_llm.services.regress.probes import Probe
    from driftscope_llm.services.regress.rendering import RunInfo

__all__ = ["register", "run_side"]


def register(app: typer.Typer) -> None:
    app.command("regress")(regress_cmd)


def run_side(console: Console, label: str, gen: Generator, probes: list[Probe],
             settings: GenerationSettings) -> list[list[Sample]]:
    """Generate one side's samples with a rich progress bar on ``console`` (stderr)."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} probes"), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task(f"{label}: sampling {settings.samples} per probe",
                                 total=len(probes))
        return gen.generate([p.prompt for p in probes], settings,
                            on_prompt=lambda n: progress.advance(task, n))


@friendly_errors
def regress_cmd(
    baseline: Annotated[str, typer.Option(
        help="Baseline model: a Hugging Face model directory or an OpenAI-compatible base URL "
             "(http://host:port/v1, '#name' sets the request's model).")],
    candidate: Annotated[str, typer.Option(help="Candidate model, as --baseline.")],
    probes: Annotated[Path, typer.Option(help="Probe suite (JSONL: id, prompt).",
                                         dir_okay=False)],
    baseline_adapter: Annotated[Path | None, typer.Option(
        help="PEFT (LoRA) adapter directory for a local baseline.")] = None,
    candidate_adapter: Annotated[Path | None, typer.Option(
        help="PEFT (LoRA) adapter directory for a local candidate.")] = None,
    samples: Annotated[int, typer.Option(min=1, max=256,
                                         help="Sampled outputs per probe and side.")] = 4,
    max_new_tokens: Annotated[int, typer.Option(min=1, max=4096,
                                                help="Longest output, in tokens.")] = 48,
    temperature: Annotated[float, typer.Option(min=0.05, max=5.0,
                                               help="Sampling temperature.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seeds sampling (each side its own stream) and the "
                                           "detectors.")] = 0,
    false_alarm_rate: Annotated[float, typer.Option(
        min=1e-6, max=0.49, help="Chance that two models with the same behaviour fail.")] = 0.01,
    fail_on: Annotated[list[str] | None, typer.Option(
        help="SIGNAL=increase|decrease|any: the direction of change that fails the gate for "
             "a signal (repeatable; defaults in docs/regression.md).")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Drift settings (YAML/JSON): its signals' detectors and minimum "
                               "effects apply.", exists=True, dir_okay=False)] = None,
    timeout: Annotated[float, typer.Option(min=1.0, help="Seconds per endpoint request.")]
    = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    html: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML (one test case per "
                                                    "probe) here.")] = None,
    top: Annotated[int, typer.Option(min=1, help="Most changed probes to show.")] = 5,
    wide: WideOpt = False,
) -> None:
    """Compare a candidate model with a baseline on a probe suite; exit 1 on a regression."""
    from driftscope_llm.services.drift import DriftSettings
    from driftscope_llm.services.regress.gate import FAIL_ON, GateSettings, run_gate
    from driftscope_llm.services.regress.generation import GenerationSettings, open_generator
    from driftscope_llm.services.regress.probes import read_suite
    from driftscope_llm.services.regress.rendering import (
        RunInfo,
        exit_code,
        render_html,
        to_json,
        to_junit,
    )

    suite = read_suite(probes)
    gate_kw = {"false_alarm_rate": false_alarm_rate, "seed": seed,
               "fail_on": {**FAIL_ON, **_directions(fail_on or [])}}
    gate = (GateSettings.from_drift(DriftSettings.from_file(config), **gate_kw) if config
            else GateSettings(**gate_kw))
    base_gen = open_generator(baseline, baseline_adapter, timeout_s=timeout)
    cand_gen = open_generator(candidate, candidate_adapter, timeout_s=timeout)
    _quiet_transformers()
    err = Console(stderr=True)
    t0 = time.monotonic()
    # each side samples from its own stream: the detectors assume independent samples
    base_set = GenerationSettings(samples, max_new_tokens, temperature, 2 * seed)
    cand_set = GenerationSettings(samples, max_new_tokens, temperature, 2 * seed + 1)
    b = run_side(err, "baseline", base_gen, suite, base_set)
    c = run_side(err, "candidate", cand_gen, suite, cand_set)
    result = run_gate(suite, b, c, gate)
    info = RunInfo(base_gen.describe, cand_gen.describe, str(probes), base_set,
                   round(time.monotonic() - t0, 2))
    if junit is not None:
        junit.write_text(to_junit(result, info), encoding="utf-8")
    if html is not None:
        html.write_text(render_html([("candidate vs baseline", result, info)]),
                        encoding="utf-8")
    if as_json:
        sys.stdout.write(json.dumps(to_json(result, info)) + "\n")
    else:
        print_result(command_console(wide=wide, highlight=True), result, info, top=top)
    raise typer.Exit(exit_code(result))


def _directions(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, _, direction = item.partition("=")
        if not name or direction not in ("increase", "decrease", "any"):
            raise typer.BadParameter(f"{item!r}: expected SIGNAL=increase|decrease|any",
                                     param_hint="--fail-on")
        out[name] = direction
    return out


_SIGNAL_COLUMNS = (Column("signal", key=True), Column("decision", key=True),
                   Column("effect", justify="right"), Column("min", justify="right"),
                   Column("direction"), Column("why"))
_PROBE_COLUMNS = (Column("probe", key=True), Column("moved (x min effect)"),
                  Column("baseline output"), Column("candidate output"))


def print_result(con: Console, result: GateResult, info: RunInfo, *, top: int = 5) -> None:
    """The human view: per-signal decisions, the most changed probes, the verdict line."""
    e = terminal
    rows = []
    for d in result.signals:
        style = {"regression": "red", "pass": "green"}.get(d.decision, "dim")
        rows.append([e(d.signal), f"[{style}]{d.decision}[/{style}]",
                     "" if d.effect is None else f"{d.effect:.3g}",
                     "" if d.min_effect is None else f"{d.min_effect:g}", e(d.direction or ""),
                     e(d.reason)])
    print_table(con, f"signals ({result.pairs} detector pairs at {result.per_pair_alpha:.2g} "
                     "each)", _SIGNAL_COLUMNS, rows)
    changed = []
    for p in result.most_changed(top):
        moved = ", ".join(f"{s} {p.effects[s]:.1f}" for s in p.moved) or "-"
        mark = " [red]FAILED[/red]" if p.failed else ""
        changed.append([e(p.probe.id) + mark, e(moved),
                        e(p.baseline[0].output[:80] if p.baseline else ""),
                        e(p.candidate[0].output[:80] if p.candidate else "")])
    print_table(con, "most changed probes", _PROBE_COLUMNS, changed)
    failed = sum(p.failed for p in result.probes)
    colour = "green" if result.verdict == "pass" else "red"
    con.print(f"[bold {colour}]{result.verdict.upper()}[/bold {colour}]: "
              f"{e(info.candidate)} vs {e(info.baseline)} on {len(result.probes)} probes "
              f"({failed} failed) at false-alarm level "
              f"{result.settings.false_alarm_rate:g}", highlight=False)


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # the attribution extra is missing; endpoints still work
        return
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
