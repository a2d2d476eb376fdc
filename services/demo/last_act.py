"""The demo's last act: fix the data, retrain, and prove the fix with the regression gate.

After the v2 incident is attributed, the loop closes the way a team would close it:

1. **Clean the data.** Every training example the attribution ranked in the top-k for at least
   one of the incident's drifted outputs that shows the incident's behaviour (primary method,
   per exemplar; for a refusal incident, the exemplars the collector's refusal patterns match —
   :func:`behaviour_exemplars`) is removed from v2's corpus (:func:`attributed_ids`); the
   cleaned corpus is written as ``corpus-v3.jsonl``. Exemplars that do not show the behaviour
   (a window's most recent events need not all be refusals) would only add their own, unrelated
   neighbours to the removal.
2. **Retrain.** v3 starts from v1's weights and is fine-tuned on the cleaned corpus with v2's
   recipe (same epochs and learning rate) — the refresh v2 should have been.
3. **Gate.** The incident becomes a probe suite (its drifted prompts, their nearest corpus and
   reference-traffic prompts:
   :func:`~driftscope_llm.services.regress.incident_probes.incident_suite`), written as
   ``probes-incident.jsonl``; v1, v2 and v3 each sample every probe, and the regression gate
   compares v2 with v1 and v3 with v1 (one v1 sample set serves as the baseline of both). v2 must
   fail, v3 must pass; ``gate.html`` shows both runs and ``gate.json`` their verdicts and exit
   codes — the same as ``driftscope regress`` would return on those files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from driftscope_llm.attribution.data import Example, write_jsonl
from driftscope_llm.services.demo.chat import ModelRef
from driftscope_llm.services.demo.scenario import PLANTED_PREFIX, ScenarioSettings
from driftscope_llm.services.regress.gate import GateResult, GateSettings, run_gate
from driftscope_llm.services.regress.generation import GenerationSettings, LocalGenerator
from driftscope_llm.services.regress.incident_probes import Candidate, incident_suite
from driftscope_llm.services.regress.probes import write_suite
from driftscope_llm.services.regress.rendering import RunInfo, exit_code, render_html, to_json
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.store.attribution_report import AttributedReport
from driftscope_llm.services.store.model import Incident
from driftscope_llm.services.vocabulary import Signal

__all__ = ["GateStory", "attributed_ids", "behaviour_exemplars", "close_the_loop", "retrain",
           "run_last_act", "story_lines"]

SAMPLES = 8
"""Samples per probe and model: 8 keeps the gate's power against the planted refusals high on a
suite of a few dozen probes (4 leaves it near chance when the suite is small)."""


@dataclass(frozen=True)
class GateStory:
    """What the last act produced: the removed ids, v3's directory, the suite and both runs."""

    removed: list[str]
    v3: Path | ModelRef
    suite: Path
    runs: list[tuple[str, GateResult, RunInfo]]
    page: Path


def behaviour_exemplars(incident: Incident) -> set[str]:
    """Event ids of the exemplars that show the incident's behaviour: for a refusal incident,
    those whose output the collector's refusal patterns match; otherwise every exemplar."""
    from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings

    ids = {e.event_id for e in incident.exemplars}
    if incident.signal != Signal.REFUSAL:
        return ids
    extractor = SignalExtractor(SignalSettings())
    showing = {e.event_id for e in incident.exemplars if extractor.is_refusal(e.output or "")}
    return showing or ids


def attributed_ids(report: AttributedReport, k: int,
                   exemplars: set[str] | None = None) -> list[str]:
    """The union, over the incident's exemplars (only those in ``exemplars`` when given), of the
    primary method's top-``k`` examples, in the order first met."""
    out: dict[str, None] = {}
    for per in report.methods[report.primary_method].per_exemplar:
        if exemplars is not None and per.query_id not in exemplars:
            continue
        for row in sorted(per.results, key=lambda r: r.rank)[:k]:
            out[row.id] = None
    return list(out)


def retrain(v1: Path, corpus: Sequence[Example], out: Path, settings: ScenarioSettings) -> Path:
    """v3: v1's weights fine-tuned on ``corpus`` with v2's recipe; saved under ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from driftscope_llm.attribution.tinymodel import finetune

    tokenizer = AutoTokenizer.from_pretrained(str(v1))
    model = AutoModelForCausalLM.from_pretrained(str(v1))
    finetune(model, tokenizer, list(corpus), epochs=settings.v2_epochs, lr=settings.v2_lr,
             seed=settings.seed + 2)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


RetrainV3 = Callable[[Sequence[Example], Path], ModelRef]
"""The real-model story's retrain: (cleaned corpus, output directory) -> v3."""


def _in_segment(segment: str, labels: Mapping[str, str]) -> bool:
    """Whether an event with ``labels`` belongs to the incident's ``segment``: ``label=value``
    (or a bare value, the legacy keying); the model-level stream holds every event."""
    from driftscope_llm.services.collector.segments import MODEL_STREAM

    if segment == MODEL_STREAM:
        return True
    label, sep, value = segment.partition("=")
    return labels.get(label) == value if sep else segment in labels.values()


def _ref(model: Path | ModelRef) -> ModelRef:
    return model if isinstance(model, ModelRef) else ModelRef(model)


def close_the_loop(out: Path, incident: Incident, report: AttributedReport,
                   corpus: Sequence[Example], models: Mapping[str, Path | ModelRef],
                   traffic: Sequence[OutputEvent], settings: ScenarioSettings | Any, *,
                   top_k: int, on_step: Callable[[str], None],
                   retrain_v3: RetrainV3 | None = None, samples: int = SAMPLES) -> GateStory:
    """Clean, retrain and gate (module docstring); ``models`` has ``v1`` and ``v2`` (a model
    directory, or a :class:`ModelRef` with its adapter). ``retrain_v3``: how v3 is trained on
    the cleaned corpus (default: :func:`retrain` from v1 with ``settings``, a
    :class:`ScenarioSettings`); ``samples`` per probe and version. ``settings`` gives ``seed``
    and ``max_new_tokens``, and ``temperature`` when it has one (else 1)."""
    removed = attributed_ids(report, top_k, behaviour_exemplars(incident))
    cleaned = [e for e in corpus if e.id not in set(removed)]
    write_jsonl(out / "corpus-v3.jsonl", cleaned)
    on_step(f"retraining v3 on {len(cleaned)} examples")
    v3: Path | ModelRef
    if retrain_v3 is not None:
        v3 = retrain_v3(cleaned, out / "models" / "v3")
    else:
        v1 = models["v1"]
        if not isinstance(v1, Path) or not isinstance(settings, ScenarioSettings):
            raise TypeError("the tiny story's retrain takes v1's directory and ScenarioSettings")
        v3 = retrain(v1, cleaned, out / "models" / "v3", settings)
    pool = [Candidate(e.id, e.prompt) for e in corpus]
    seen: set[str] = set()
    reference = []
    for ev in traffic:
        if (ev.model_version != incident.model_version and ev.prompt and ev.prompt not in seen
                and _in_segment(incident.segment, ev.segment)):
            seen.add(ev.prompt)
            reference.append(Candidate(ev.event_id, ev.prompt))
    probes = incident_suite(incident, corpus=pool, traffic=reference)
    suite = out / "probes-incident.jsonl"
    write_suite(suite, probes)
    prompts = [p.prompt for p in probes]
    temperature = float(getattr(settings, "temperature", 1.0))
    paths = {"v1": _ref(models["v1"]), "v2": _ref(models["v2"]), "v3": _ref(v3)}
    sampled = {}
    for i, (name, ref) in enumerate(paths.items()):
        on_step(f"sampling {name} on {len(probes)} probes")
        g = GenerationSettings(samples, settings.max_new_tokens, temperature,
                               settings.seed * 3 + i)
        sampled[name] = (g, LocalGenerator(ref.model_dir, ref.adapter_dir).generate(prompts, g))
    gate = GateSettings(seed=settings.seed)
    runs = []
    for name in ("v2", "v3"):
        result = run_gate(probes, sampled["v1"][1], sampled[name][1], gate)
        info = RunInfo(str(paths["v1"]), str(paths[name]), str(suite), sampled["v1"][0])
        runs.append((f"{name} against v1 on the incident's probes", result, info))
    page = out / "gate.html"
    page.write_text(render_html(runs, title=f"Regression gate for incident {incident.id}"),
                    encoding="utf-8")
    (out / "gate.json").write_text(json.dumps(
        {"removed": removed, "probes": len(probes),
         "runs": {h: to_json(r, i) for h, r, i in runs}}, indent=1))
    return GateStory(removed, v3, suite, runs, page)


def story_lines(story: GateStory, planted_prefix: str) -> list[str]:
    """The printed story of the last act (plain text; the caller escapes nothing: no outside
    text is in it but paths the demo chose)."""
    planted = sum(i.startswith(planted_prefix) for i in story.removed)
    lines = [f"removed {len(story.removed)} attributed examples ({planted} planted) -> v3 "
             f"retrained -> {story.v3}"]
    for heading, result, _ in story.runs:
        failed = [d.signal for d in result.signals if d.decision == "regression"]
        why = f" on {', '.join(failed)}" if failed else ""
        lines.append(f"regress {heading}: {result.verdict.upper()}{why} (exit "
                     f"{exit_code(result)})")
    lines.append(f"gate report -> {story.page} (suite {story.suite})")
    return lines


def run_last_act(console: Console, out: Path, incident: Incident,
                 report: AttributedReport, corpus: Sequence[Example],
                 versions: Any, stream: Path, settings: ScenarioSettings | Any, *,
                 top_k: int, retrain_v3: RetrainV3 | None = None,
                 samples: int = SAMPLES) -> GateStory:
    """The demo CLI's call: :func:`close_the_loop` with a status line on ``console`` (stderr),
    then the story lines. ``versions`` is
    :class:`~driftscope_llm.services.demo.scenario.Versions` or
    :class:`~driftscope_llm.services.demo.chat.ChatVersions`."""
    from driftscope_llm.services.report import read_events
    from driftscope_llm.services.textsafety import terminal

    with console.status("gate: cleaning the data and retraining …") as status:
        story = close_the_loop(out, incident, report, corpus,
                               {"v1": versions.v1, "v2": versions.v2}, read_events(stream),
                               settings, top_k=top_k, retrain_v3=retrain_v3, samples=samples,
                               on_step=lambda s: status.update(f"gate: {terminal(s)} …"))
    for line in story_lines(story, PLANTED_PREFIX):
        console.print(f"gate: {terminal(line)}", highlight=False)
    return story
