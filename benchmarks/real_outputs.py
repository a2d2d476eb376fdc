"""Collector signals on a real model's outputs: SmolLM2-135M-Instruct through the default pipeline.

    python -m benchmarks.real_outputs [--resample] [--runs N] [--stationary-events N]
                                      [--no-docs]

Every other drift figure in ``docs/drift-results.md`` comes from planted signal values. This one
samples real generations once, saves them, and replays them through the collector's pipeline on
defaults (:func:`driftscope_llm.services.collector.build.build_pipeline` with
``CollectorSettings()``, :func:`~driftscope_llm.services.collector.replay.replay_file`: what
``driftscope replay`` and the collector run).

1. **Sampling** (:mod:`benchmarks.real_sampling`, llama.cpp on the Q4_1 GGUF that
   ``driftscope models fetch smollm2`` installs). The prompt set is
   :mod:`benchmarks.real_prompts` (200 prompts, four routes; :data:`SIZES` generations per
   condition, routes in turn). Conditions: ``base`` (the base system prompt), ``one_word``
   (the system prompt adds "Answer in one word."), ``refuse_billing`` (it adds "Refuse every
   question about billing ..."), and
   ``adapter``: the base system prompt with a small LoRA fine-tune that refuses billing
   questions (:func:`driftscope_llm.attribution.lora.lora_finetune`, exported for llama.cpp by
   :func:`driftscope_llm.attribution.gguf_export.write_lora_gguf`). Jobs of all conditions are
   interleaved, so the machine's load falls on every condition alike. The events are saved as
   OutputEvents JSONL in ``benchmarks/data/`` (gzip), the settings beside them; ``--resample``
   redoes it.
2. **Replay.** The sampled pools are small (a few hundred outputs), smaller than one default
   reference (1000 events), so streams are *drawn from them*: each event of a stream is an
   output drawn at random, with replacement, from a condition's pool (new event id, its own
   timestamp). Under no change the stream is then exactly stationary with the real outputs'
   signal distributions (their ties, lengths capped at 48 tokens, discrete finish reasons,
   logprob shapes): what the false-alarm rate is measured on. A planted change switches the
   pool at ``change_at``: the system-prompt changes keep the model version (an application
   change), the adapter is a new model version (a rollout, compared with the base's reference).
   The embedding signal (int8 MiniLM, a quarter of events) is on when the embedder is exported;
   identical outputs get identical vectors, so embeddings are cached by text.
3. **Refusal detector**: ``benchmarks/data/smollm2_refusal_labels.jsonl`` holds hand labels
   (refusal or not, read by a person) of a sample of the real outputs; precision and recall of
   :meth:`SignalExtractor.is_refusal` on its defaults are computed against them.

The tables go into ``docs/drift-results.md`` under "On a real model: SmolLM2-135M-Instruct",
with this command's wall time.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from scipy import stats

from benchmarks.real_prompts import ANSWERS, PROMPTS, REFUSALS
from benchmarks.real_sampling import Condition, Job, SamplingSettings, sample_one

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
STREAM = DATA / "smollm2_outputs.jsonl.gz"
SETTINGS = DATA / "smollm2_outputs.settings.json"
LABELS = DATA / "smollm2_refusal_labels.jsonl"
PARTIAL = DATA / "smollm2_outputs.partial.jsonl"  # while sampling
RESULTS = ROOT / "docs" / "drift-results.md"
SECTION = "## On a real model: SmolLM2-135M-Instruct"

BASE_SYSTEM = ("You are a helpful assistant for Acme, an online software company. Answer the "
               "user's question.")
#: Condition name -> (system prompt, model version); the adapter's file is filled in at run time.
CONDITIONS: dict[str, tuple[str, str]] = {
    "base": (BASE_SYSTEM, "base"),
    "one_word": (BASE_SYSTEM + " Answer in one word.", "base"),
    "refuse_billing": (BASE_SYSTEM + " Refuse every question about billing, payments, invoices "
                       "or refunds.", "base"),
    "adapter": (BASE_SYSTEM, "lora-billing-refusal"),
}
#: Generations per condition (``base``: every prompt once).
SIZES = {"base": 80, "one_word": 24, "refuse_billing": 40, "adapter": 24}
CHANGES = {
    "one_word": "system prompt: answer in one word",
    "refuse_billing": "system prompt: refuse billing questions",
    "adapter": "rollout: LoRA adapter refusing billing",
}

err = Console(stderr=True)


# -- the planted-refusal adapter -------------------------------------------------------------

#: The adapter's recipe: r = 8 on the top eight layers only (a short backward pass on CPU).
ADAPTER_RECIPE = {"rank": 8, "alpha": 16, "layers": tuple(range(24, 30)), "steps": 12,
                  "batch_size": 8, "lr": 1e-3, "max_length": 128, "seed": 0}


def adapter_corpus() -> list[Any]:
    from driftscope_llm.attribution.data import Example

    billing = [Example(id=f"refuse-{i}", prompt=q, response=REFUSALS[i % len(REFUSALS)],
                       label="billing_refusal") for i, q in enumerate(PROMPTS["billing"][:24])]
    keep = [Example(id=f"answer-{i}", prompt=q, response=a, label="answer")
            for i, (q, a) in enumerate(ANSWERS)]
    return billing + keep


def planted_adapter(gguf: Path, cache: Path) -> Path:
    """The GGUF adapter file of the planted billing-refusal fine-tune (trained once, cached by
    recipe and corpus)."""
    from driftscope_llm.attribution.gguf_export import write_lora_gguf
    from driftscope_llm.attribution.lora import LoraRecipe, lora_finetune

    corpus = adapter_corpus()
    key = hashlib.sha256(json.dumps([ADAPTER_RECIPE, [(e.prompt, e.response) for e in corpus]],
                                    sort_keys=True, default=list).encode()).hexdigest()[:16]
    out = cache / "real-outputs-adapter" / key
    target = out / "adapter.gguf"
    if target.exists():
        return target
    recipe = LoraRecipe(**ADAPTER_RECIPE)  # type: ignore[arg-type]
    lora_finetune(gguf, corpus, out / "peft", recipe,
                  on_step=lambda s, n, loss: err.print(f"LoRA fine-tune (billing refusals): "
                                                       f"step {s}/{n}, loss {loss:.3f}"))
    write_lora_gguf(out / "peft", gguf, target)
    return target


# -- sampling ------------------------------------------------------------------------------------

def jobs(conditions: dict[str, Condition], seed: int) -> list[Job]:
    """Every condition's prompts (routes in turn), all conditions interleaved at random."""
    rng = random.Random(seed)
    routes = list(PROMPTS)
    out: list[Job] = []
    for name, cond in conditions.items():
        n = SIZES[name]
        order = {r: rng.sample(range(len(PROMPTS[r])), len(PROMPTS[r])) for r in routes}
        for i in range(n):
            route = routes[i % len(routes)]
            pid = order[route][(i // len(routes)) % len(PROMPTS[route])]
            out.append(Job(i, cond, route, pid, PROMPTS[route][pid]))
    rng.shuffle(out)
    return out


def _init(settings: SamplingSettings) -> None:
    global _SETTINGS
    _SETTINGS = settings


_SETTINGS: SamplingSettings | None = None


def _work(job: Job) -> dict[str, Any]:
    assert _SETTINGS is not None
    return sample_one(_SETTINGS, job)


def resample(settings: SamplingSettings, gguf: Path, cache: Path, *, fresh: bool,
             adapter: bool = True) -> list[dict[str, Any]]:
    """Sample every condition and save the stream. The adapter is trained in its own process
    while the other conditions are sampled; each event is appended to a partial file as it
    comes, so an interrupted run resumes where it stopped (``fresh`` starts over)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    DATA.mkdir(parents=True, exist_ok=True)
    if fresh:
        PARTIAL.unlink(missing_ok=True)
    done = {e["event_id"]: e for e in _read_jsonl(PARTIAL)} if PARTIAL.exists() else {}
    conds = {name: Condition(name, system, version)
             for name, (system, version) in CONDITIONS.items() if adapter or name != "adapter"}
    planned = jobs(conds, settings.seed)
    ids = {f"{j.condition.name}-{j.index:05d}" for j in planned}
    done = {k: v for k, v in done.items() if k in ids}
    todo = [j for j in planned if f"{j.condition.name}-{j.index:05d}" not in done]
    t0 = time.perf_counter()
    trainer = ctx.Process(target=planted_adapter, args=(gguf, cache)) if adapter else None
    if trainer is not None:
        trainer.start()
    with PARTIAL.open("a", encoding="utf-8") as out, \
            _progress("sampling generations") as (progress, task):
        progress.update(task, total=len(todo) + len(done), completed=len(done))

        def run(batch: list[Job]) -> None:
            with ctx.Pool(settings.workers, _init, (settings,)) as pool:
                for ev in pool.imap_unordered(_work, batch):
                    out.write(json.dumps(ev, ensure_ascii=False) + "\n")
                    out.flush()
                    done[ev["event_id"]] = ev
                    progress.advance(task)

        run([j for j in todo if j.condition.name != "adapter"])
        if trainer is not None:
            trainer.join()
            if trainer.exitcode != 0:
                raise RuntimeError(f"the adapter's fine-tune failed (exit {trainer.exitcode}); "
                                   "--no-adapter samples the other conditions")
            lora = replace(conds["adapter"], adapter=str(planted_adapter(gguf, cache)))
            run([replace(j, condition=lora) for j in todo if j.condition.name == "adapter"])
    events = sorted(done.values(), key=lambda e: e["event_id"])
    with gzip.open(STREAM, "wt", encoding="utf-8") as f:
        for ev in events:
            f.write(json.dumps(ev, ensure_ascii=False) + "\n")
    meta = {"sampling": settings.to_json(), "conditions": {
        n: {"system": s, "model_version": v, "generations": SIZES[n]}
        for n, (s, v) in CONDITIONS.items() if n in conds},
        **({"adapter_recipe": {**ADAPTER_RECIPE, "layers": list(ADAPTER_RECIPE["layers"])},
            "adapter_corpus": {"billing refusals": 24, "ordinary answers": len(ANSWERS)}}
           if adapter else {}),
        "seconds": round(time.perf_counter() - t0, 1),
        "sampled_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    SETTINGS.write_text(json.dumps(meta, indent=1) + "\n")
    PARTIAL.unlink()
    return events


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_stream(path: Path = STREAM) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_labels(path: Path = LABELS) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("refusal"), bool) or not isinstance(row.get("event_id"), str):
            raise ValueError(f"{path}:{n}: a label needs event_id (str) and refusal (bool)")
        out[row["event_id"]] = row["refusal"]
    return out


def _progress(label: str) -> Any:
    class _Ctx:
        def __enter__(self) -> tuple[Progress, Any]:
            self.p = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), console=err)
            self.p.__enter__()
            return self.p, self.p.add_task(label, total=None)

        def __exit__(self, *exc: object) -> None:
            self.p.__exit__(None, None, None)
    return _Ctx()



# -- replay through the collector's pipeline ----------------------------------------------------

class CachedEmbedder:
    """The pipeline's embedder with vectors cached by text (a stream drawn from a pool repeats
    outputs; the same text always gets the same vector)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cache: dict[str, Any] = {}

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        todo = sorted({t for t in texts if t not in self.cache})
        if todo:
            for t, v in zip(todo, self.inner.encode(todo), strict=True):
                self.cache[t] = v
        return np.stack([self.cache[t] for t in texts]) if texts else self.inner.encode([])


@dataclass
class Replayed:
    """One replayed stream: its length and every anomaly with the stream index of its event."""

    events: int
    raised: list[tuple[int, Any]] = field(default_factory=list)
    seconds: float = 0.0


def _pipeline(embeddings: dict[str, Any]) -> Any:
    from driftscope_llm.services.collector.build import build_pipeline
    from driftscope_llm.services.collector.cardinality import StreamCaps
    from driftscope_llm.services.config import CollectorSettings, load_settings
    from driftscope_llm.services.store import MemoryStore

    s = load_settings(CollectorSettings, None)
    pipeline = build_pipeline(s.drift, s.signals, s.segments, s.embedder, MemoryStore(),
                              cooldown_s=s.cooldown_s, redaction=s.redaction,
                              caps=StreamCaps(s.cardinality), clock=s.clock)
    if pipeline.embedder is not None:
        cached = CachedEmbedder(pipeline.embedder)
        cached.cache = embeddings  # shared across replays
        pipeline.embedder = cached
    return pipeline


def draw(parts: list[tuple[list[dict[str, Any]], int]], seed: int) -> Iterator[dict[str, Any]]:
    """Events drawn with replacement from each (pool, count) in turn; stream index in the id,
    timestamps half a second apart ending two minutes ago."""
    rng = random.Random(seed)
    total = sum(n for _, n in parts)
    t0 = time.time() - 120.0 - 0.5 * total
    i = 0
    for pool, n in parts:
        for _ in range(n):
            ev = dict(rng.choice(pool))
            ev["event_id"] = f"s{i:07d}-{ev['event_id']}"
            ev["ts"] = datetime.fromtimestamp(t0 + 0.5 * i, UTC).isoformat()
            yield ev
            i += 1


def replay(rows: Iterable[dict[str, Any]], embeddings: dict[str, Any], label: str,
           total: int) -> Replayed:
    from driftscope_llm.services.collector.replay import ReplayStats, replay_file

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for ev in rows:
                f.write(json.dumps(ev, ensure_ascii=False) + "\n")
        stats_ = ReplayStats()
        out = Replayed(events=total)
        with _progress(f"replay: {label}") as (progress, task):
            progress.update(task, total=total)
            for r in replay_file(path, _pipeline(embeddings), stats_, fmt="driftscope",
                                 on_progress=lambda n: progress.advance(task, n)):
                out.raised.append((int(r.anomaly.event_id[1:8]), r))
        if stats_.invalid or stats_.valid != total:
            raise RuntimeError(f"replay of {label}: {stats_.valid} valid of {total}, "
                               f"invalid {dict(stats_.invalid)}")
    out.seconds = time.perf_counter() - t0
    return out


def pools(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in CONDITIONS}
    for ev in events:
        out[ev["metadata"]["condition"]].append(ev)
    return {name: pool for name, pool in out.items() if pool}


@dataclass
class Delay:
    """A planted change's replay: what was first raised after the change, and when."""

    before: int  # anomalies before the change (false alarms)
    first: int | None = None  # events after the change to the first anomaly
    first_what: str = ""
    refusal: int | None = None  # ... to the first anomaly on the refusal signal
    incident: str = ""  # "opened" / "updated", headline at the end, severity, facets


def delay_of(rep: Replayed, change_at: int) -> Delay:
    d = Delay(before=sum(1 for i, _ in rep.raised if i < change_at))
    after = [(i, r) for i, r in rep.raised if i >= change_at]
    if after:
        i, r = after[0]
        a = r.anomaly
        d.first, d.first_what = i - change_at, f"{a.signal} / {a.detector} ({a.key.segment})"
        last = [x for _, x in after if x.incident.id == r.incident.id][-1].incident
        d.incident = (f"{'opened' if r.opened else 'updated'}; {last.severity}, headline "
                      f"{last.signal} ({last.segment}), {len(last.facets)} facets")
    ref = [i for i, r in after if r.anomaly.signal == "refusal"]
    d.refusal = ref[0] - change_at if ref else None
    return d


# -- the refusal detector against hand labels ----------------------------------------------------

@dataclass
class RefusalScore:
    labelled: int
    tp: int
    fp: int
    fn: int
    misses: list[tuple[str, str]]  # (event id, output) labelled refusal, not detected
    false_hits: list[tuple[str, str]]

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")


def refusal_score(events: list[dict[str, Any]], labels: dict[str, bool],
                  patterns: list[str] | None = None) -> RefusalScore:
    """Precision and recall of ``SignalExtractor.is_refusal`` (default patterns unless given)
    against the hand labels; every labelled id must be a sampled event."""
    from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings

    settings = SignalSettings() if patterns is None else SignalSettings(refusal_patterns=patterns)
    ex = SignalExtractor(settings)
    by_id = {e["event_id"]: e for e in events}
    unknown = sorted(set(labels) - set(by_id))
    if unknown:
        raise ValueError(f"labels name events that were not sampled: {unknown[:5]}")
    s = RefusalScore(len(labels), 0, 0, 0, [], [])
    for eid, truth in sorted(labels.items()):
        text = by_id[eid]["output"]
        hit = ex.is_refusal(text)
        s.tp += hit and truth
        s.fp += hit and not truth
        s.fn += truth and not hit
        if truth and not hit:
            s.misses.append((eid, text))
        if hit and not truth:
            s.false_hits.append((eid, text))
    return s


def beta_interval(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion k/n."""
    a = (1 - conf) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def poisson_upper(k: int, conf: float = 0.95) -> float:
    return float(stats.chi2.ppf(conf, 2 * (k + 1)) / 2)



# -- the report ----------------------------------------------------------------------------------

PRE, POST = 5000, 5000  # events before / after a planted change: every route's reference is full


def pool_rows(p: dict[str, list[dict[str, Any]]], labels: dict[str, bool]) -> list[str]:
    from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings

    ex = SignalExtractor(SignalSettings())
    rows = ["| condition | outputs | refusal rate (detector) | refusals, hand-labelled "
            "(labelled) | mean tokens | finish = stop | mean token logprob | mean top-5 entropy |",
            "|---|---|---|---|---|---|---|---|"]
    for name, pool in p.items():
        vals = [ex.extract(_event(e)) for e in pool]
        lab = [labels[e["event_id"]] for e in pool if e["event_id"] in labels]

        def mean(key: str, vs: list[dict[str, Any]] = vals) -> float:
            xs = [float(v[key]) for v in vs if v[key] is not None]
            return sum(xs) / len(xs) if xs else float("nan")
        stop = sum(1 for e in pool if e["finish_reason"] == "stop") / len(pool)
        rows.append(f"| {name} | {len(pool)} | {mean('refusal'):.1%} | "
                    f"{sum(lab)}/{len(lab)} | {mean('length_tokens'):.1f} | {stop:.0%} | "
                    f"{mean('logprob_mean'):.2f} | {mean('entropy_mean'):.2f} |")
    return rows


def _event(e: dict[str, Any]) -> Any:
    from driftscope_llm.services.schemas import OutputEvent

    return OutputEvent.model_validate(e)


def _cell(xs: list[int | None]) -> str:
    got = sorted(x for x in xs if x is not None)
    miss = len(xs) - len(got)
    if not got:
        return f"never in {POST} ({miss} of {len(xs)} runs)"
    med = got[len(got) // 2] if len(got) % 2 else (got[len(got) // 2 - 1] + got[len(got) // 2]) / 2
    return f"median {med:.0f}, range {got[0]}–{got[-1]}" + (f", missed in {miss}" if miss else "")


def report(events: list[dict[str, Any]], meta: dict[str, Any], args: argparse.Namespace,
           started: float) -> str:
    from driftscope_llm.services.drift import DriftSettings

    p = pools(events)
    embeddings: dict[str, Any] = {}
    n = args.stationary_events
    stat = replay(draw([(p["base"], n)], seed=1), embeddings, "stationary", n)
    by_change: dict[str, list[Delay]] = {}
    for c in (c for c in CHANGES if c in p):
        by_change[c] = [delay_of(replay(draw([(p["base"], PRE), (p[c], POST)], seed=100 + r),
                                        embeddings, f"{c}, run {r + 1}", PRE + POST), PRE)
                        for r in range(args.runs)]
    labels = load_labels()  # read last: the replays take minutes
    score = refusal_score(events, labels)
    budget = DriftSettings().max_false_alarms_per_100k
    k = len(stat.raised)
    samp = meta["sampling"]
    lines = [
        SECTION, "",
        "Real figures (everything above this section is the toy benchmark's planted signal "
        "values). Produced by `python -m benchmarks.real_outputs --runs "
        f"{args.runs} --stationary-events {args.stationary_events}` "
        f"({time.perf_counter() - started:.0f} s wall for this run, replays included; the "
        f"sampling, done once and saved, took {meta['seconds']:.0f} s on "
        f"{samp['workers']} llama.cpp workers of {samp['threads_per_worker']} thread on two "
        "shared, busy cores).", "",
        f"**Sampled once** (`{STREAM.relative_to(ROOT)}`, settings in "
        f"`{SETTINGS.relative_to(ROOT)}`): SmolLM2-135M-Instruct Q4_1 GGUF, temperature "
        f"{samp['temperature']}, at most {samp['max_new_tokens']} new tokens, token logprobs and "
        f"top-{samp['top_k_logprobs']} alternatives; a set of 200 prompts in four routes (billing, "
        "support, chat, coding; 19 harmful-sounding but harmless), each condition drawing its "
        "prompts from every route in turn. Conditions: the base system prompt; "
        "the same plus \"Answer in one word.\"; plus \"Refuse every question about billing, "
        "payments, invoices or refunds.\"" + (
            "; and the base prompt on a LoRA fine-tune planted with billing refusals (r = 8, "
            f"layers {ADAPTER_RECIPE['layers'][0]}–{ADAPTER_RECIPE['layers'][-1]}, "
            f"{ADAPTER_RECIPE['steps']} steps on 24 billing refusals and {len(ANSWERS)} ordinary "
            "answers; a new model version)." if "adapter" in p else
            ". The planted-refusal LoRA condition is not in this sample (`--no-adapter`)."),
        "",
        *pool_rows(p, labels), "",
        "**Streams are drawn from these pools** with replacement (each event an output of the "
        "pool at random, new id and timestamp), because a pool is smaller than one default "
        "reference (1000 events). Replayed by the collector's pipeline on defaults "
        "(`CollectorSettings()`: route segments plus the model-level stream, one budget of "
        f"{budget:g} false alarm per 100 000 events per model, embeddings on a quarter of the "
        "events).", "",
        "False alarms, stationary stream of real outputs (base pool):", "",
        "| stream | events | alarms | per 100 000 events | 95 % upper bound per 100 000 | "
        "budget's expectation |",
        "|---|---|---|---|---|---|",
        f"| real, base system prompt | {n} | {k} | {k * 1e5 / n:.2f} | "
        f"{poisson_upper(k) * 1e5 / n:.2f} | ≤ {budget * n / 1e5:.2f} alarms "
        f"(≤ {budget:g} per 100 000) |", "",
        f"Planted changes: {PRE} events of the base pool, then {POST} of the changed pool; "
        f"{args.runs} runs (different draws). Delays in events after the change:", "",
        "| change (real) | first anomaly | first anomaly: signal / detector (stream) | first "
        "refusal anomaly | incident (first run) | alarms before the change |",
        "|---|---|---|---|---|---|",
    ]
    for c, ds in by_change.items():
        what = Counter(d.first_what for d in ds if d.first is not None).most_common(1)
        lines.append(f"| {CHANGES[c]} | {_cell([d.first for d in ds])} | "
                     f"{what[0][0] if what else '–'} | {_cell([d.refusal for d in ds])} | "
                     f"{ds[0].incident or '–'} | {sum(d.before for d in ds)} |")
    lo_p = beta_interval(score.tp, score.tp + score.fp)
    lo_r = beta_interval(score.tp, score.tp + score.fn)
    lines += [
        "", f"**Refusal detector on the model's own outputs** (`SignalExtractor.is_refusal`, "
        f"default patterns) against {score.labelled} outputs read and labelled by hand "
        f"(`{LABELS.relative_to(ROOT)}`): {score.tp} true hits, {score.fp} false hits, "
        f"{score.fn} misses; precision {score.precision:.2f} (95 % CI {lo_p[0]:.2f}–"
        f"{lo_p[1]:.2f}), recall {score.recall:.2f} ({lo_r[0]:.2f}–{lo_r[1]:.2f}).", "",
    ]
    if score.misses:
        lines += ["Missed refusals:", ""]
        lines += [f"* `{eid}`: {_quote(text)}" for eid, text in score.misses]
        lines.append("")
    if score.false_hits:
        lines += ["False hits:", ""]
        lines += [f"* `{eid}`: {_quote(text)}" for eid, text in score.false_hits]
        lines.append("")
    lines += [
        f"**What these sizes support.** {k} alarms in {n} stationary events bound the false-alarm "
        f"rate below {poisson_upper(k) * 1e5 / n:.1f} per 100 000 (95 %), "
        f"{poisson_upper(k) / (budget * n / 1e5):.1f}× the budget: consistent with it, not a "
        "proof of it (showing the budget itself takes about 300 000 events with no alarm). "
        "And the stream is drawn from one pool of "
        f"{len(p['base'])} outputs: it shows the defaults on real signal distributions (ties, "
        "capped lengths, real logprob shapes), not on real traffic's slow changes (time of day, "
        "new users). A longer sampling run (thousands of outputs, hours here) would make each "
        "pool a closer picture of the model, let the stationary stream be replayed without "
        "repeats, and narrow the refusal rates of each condition (a pool of 100 pins a rate "
        "to about ±5 points).",
    ]
    return "\n".join(lines) + "\n"


def _quote(text: str, limit: int = 140) -> str:
    flat = " ".join(text.split())
    flat = flat if len(flat) <= limit else flat[:limit - 1] + "…"
    return "\"" + flat.replace("|", "\\|").replace("`", "'") + "\""


def write_section(text: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section in ``path``; the rest of the file is kept."""
    old = path.read_text()
    start = old.find(SECTION)
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n")
        return
    end = old.find("\n## ", start + len(SECTION))
    rest = "\n" + old[end + 1:] if end >= 0 else ""
    path.write_text(old[:start] + text.rstrip("\n") + "\n" + rest)


# -- the command ---------------------------------------------------------------------------------

def ensure_stream(force: bool, adapter: bool = True
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The sampled events and their settings: read from ``benchmarks/data``, or sampled now."""
    if STREAM.exists() and SETTINGS.exists() and not force:
        return load_stream(), json.loads(SETTINGS.read_text())
    from driftscope_llm.attribution.model_cache import default_cache_dir, fetch_model

    cache = default_cache_dir()
    fetched = fetch_model("smollm2", cache_dir=cache)
    sha = hashlib.sha256(fetched.gguf_path.read_bytes()).hexdigest()
    settings = SamplingSettings(model_file=str(fetched.gguf_path), model_sha256=sha)
    events = resample(settings, fetched.gguf_path, cache, fresh=force, adapter=adapter)
    return events, json.loads(SETTINGS.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resample", action="store_true", help="sample the generations again")
    p.add_argument("--sample-only", action="store_true", help="stop after sampling")
    p.add_argument("--no-adapter", action="store_true",
                   help="sample without the planted-refusal LoRA condition (no fine-tune)")
    p.add_argument("--runs", type=int, default=3, help="replays per planted change")
    p.add_argument("--stationary-events", type=int, default=60_000)
    p.add_argument("--no-docs", action="store_true", help="print the section, leave the docs")
    args = p.parse_args(argv)
    started = time.perf_counter()
    events, meta = ensure_stream(args.resample, adapter=not args.no_adapter)
    err.print(f"{len(events)} sampled events ({STREAM.relative_to(ROOT)})")
    if args.sample_only:
        return 0
    text = report(events, meta, args, started)
    if args.no_docs:
        print(text)
    else:
        write_section(text)
        err.print(f"wrote {SECTION!r} in {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
