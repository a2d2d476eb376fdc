"""The smallest change the regression gate flags on a real model, at its default level and size.

    python -m benchmarks.gate_sensitivity [--steps 1,4,16] [--runs 5] [--pool 8] [--probes 24]
                                          [--alpha 0.01] [--no-quant] [--cache-dir DIR]

Model: SmolLM2-135M-Instruct (``driftscope models fetch smollm2``: its own Q4_1 GGUF, and the
float32 Hugging Face directory transformers dequantises from it — the same weights). The
baseline is the float32 model sampled by the gate's local generator (batched, KV cache, token
logprobs and top-5 alternatives). Changes, each compared with that baseline:

* **LoRA steps on unrelated chat data** — one LoRA fine-tune (:mod:`driftscope_llm.attribution.
  lora`, its default recipe: r = 8 on all seven projections of every layer, α 16, AdamW at
  2e-4, batches of 8, response-only loss) on general chat examples (:data:`UNRELATED`: cooking,
  nature, history) that share no topic with the probes; the adapter after 1, 2, 4, … steps
  (``--steps``, checkpoints of one run) is sampled like the baseline;
* **quantisation swap** — the Q4_1 GGUF run by llama.cpp (``llama_cpp.Llama``, the engine
  behind ``llama_cpp.server``; :func:`make_pool_llama`) against the float32 model: what a team
  changes when it serves the quantised file instead of the checkpoint. The weights are equal
  (Q4_1 dequantises exactly); llama.cpp computes Q4_1 x Q8 dot products;
* **none** (baseline against itself, disjoint draws): the null, to show the level holds.

Each model samples a *pool* of ``--pool`` generations per probe once (temperature 1, the gate's
48 new tokens); one gate run (:func:`run_gate`, what ``driftscope regress`` runs) draws the
gate's default 4 samples per probe and side from the pools. Power = share of ``--runs`` runs that
failed, with its exact (Clopper-Pearson) 95 % interval. Runs of one point share their pools, so
they are not independent draws of fresh generations: the intervals understate the spread.

Published anchors printed beside the table: log-probability tracking detects a single
fine-tuning step from one-token logprobs (arXiv 2512.03816, ICLR 2026); Model Equality Testing's
MMD test reaches 77 % median power at ~10 samples per prompt against swapped or quantised models
(arXiv 2410.20247, ICLR 2025).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scipy import stats

from driftscope_llm.attribution.data import Example
from driftscope_llm.services.regress.gate import GateSettings, run_gate
from driftscope_llm.services.regress.generation import (
    GenerationSettings,
    LocalGenerator,
    Sample,
)
from driftscope_llm.services.regress.probes import Probe

Pool = list[list[Sample]]

#: General chat examples with no topic in common with :data:`PROBES` (cooking, nature, history).
UNRELATED = [Example(f"u{i:02d}", p, r) for i, (p, r) in enumerate([
    ("How long should I boil an egg?", "About 7 minutes for a firm yolk, 5 for a soft one."),
    ("What is a good substitute for butter in baking?", "Coconut oil or apple sauce work well."),
    ("How do I keep basil fresh?", "Stand the stems in a glass of water at room temperature."),
    ("Why do onions make you cry?", "Cutting them releases a gas that irritates the eyes."),
    ("What makes bread rise?", "Yeast ferments sugar and releases carbon dioxide."),
    ("How do I cook rice on the stove?", "Simmer one cup of rice in two cups of water for 18 "
                                         "minutes, covered."),
    ("Why is the sky blue?", "Air scatters blue sunlight more than red light."),
    ("How do bees make honey?", "They collect nectar, break it down, and evaporate the water."),
    ("Why do leaves change color in autumn?", "Chlorophyll fades and other pigments show."),
    ("How tall can a giraffe grow?", "Up to about 5.5 metres."),
    ("What do pandas eat?", "Almost only bamboo."),
    ("How far away is the Moon?", "About 384,000 kilometres on average."),
    ("Who built the pyramids of Giza?", "Egyptian workers, about 4,500 years ago."),
    ("When did the Berlin Wall fall?", "On 9 November 1989."),
    ("What was the Silk Road?", "A network of trade routes linking China and the Mediterranean."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci."),
    ("How many strings does a violin have?", "Four."),
    ("What is a haiku?", "A short poem of three lines with 5, 7 and 5 syllables."),
    ("How do I start running?", "Begin with short run-walk intervals three times a week."),
    ("How much water should I drink a day?", "Around two litres, more when it is hot."),
    ("What is the boiling point of water?", "100 degrees Celsius at sea level."),
    ("Why does ice float?", "Ice is less dense than liquid water."),
    ("What is photosynthesis?", "Plants turning light, water and CO2 into sugar and oxygen."),
    ("How many planets are in the solar system?", "Eight."),
    ("Give me a tip for better sleep.", "Keep the same bedtime every day, even on weekends."),
    ("What is a good houseplant for beginners?", "A pothos: it tolerates low light."),
    ("How do I remove a coffee stain?", "Blot it, then rinse with cold water and a little soap."),
    ("What is the capital of Australia?", "Canberra."),
    ("How many bones are in the human body?", "206 in an adult."),
    ("What language is spoken in Brazil?", "Portuguese."),
    ("Why do cats purr?", "Mostly to signal contentment, sometimes to soothe themselves."),
    ("How fast can a cheetah run?", "Up to about 110 kilometres per hour."),
])]

#: The probe suite: everyday requests to an assistant (24, the size of the gate's benchmarks).
PROBES = [Probe(id=f"p{i:02d}", prompt=p) for i, p in enumerate([
    "How do I reset my password?", "Can you summarise what a VPN does?",
    "Write a short thank-you note to a colleague.", "What should I pack for a weekend trip?",
    "Explain what an API is in one paragraph.", "How do I change my billing address?",
    "Suggest a name for a small bakery.", "What is the difference between RAM and storage?",
    "How can I improve my handwriting?", "Give me three ideas for a birthday party.",
    "How do I write a good cover letter?", "What is compound interest?",
    "Why was I charged twice this month?", "How do I back up my phone?",
    "Recommend a board game for four players.", "What are the symptoms of a cold?",
    "How do I politely decline a meeting?", "Explain recursion to a child.",
    "What is a healthy breakfast?", "How do I learn to touch type?",
    "Can you help me plan a study schedule?", "What does a project manager do?",
    "How do I clean a laptop keyboard?", "Tell me a fun fact about octopuses.",
])]


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    lo = 0.0 if k == 0 else float(stats.beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def make_pool_local(model_dir: Path, probes: Sequence[Probe], pool: int, seed: int, *,
                    adapter: Path | None = None) -> Pool:
    """``pool`` generations per probe from the gate's local generator (float32, batched)."""
    gen = LocalGenerator(model_dir, adapter)
    return gen.generate([p.prompt for p in probes], GenerationSettings(samples=pool, seed=seed))


def make_pool_llama(gguf: Path, model_dir: Path, probes: Sequence[Probe], pool: int, seed: int,
                    *, max_tokens: int = 48, threads: int = 2) -> Pool:
    """``pool`` generations per probe computed by llama.cpp on the GGUF file.

    llama.cpp evaluates the tokens (its Q4_1 kernels); sampling at temperature 1 and the logprobs
    (natural log, top-5) are computed here from its logits, with numpy. The OpenAI-compatible
    path (``create_chat_completion(logprobs=True)``) gives the same numbers but sorts the whole
    49k vocabulary in Python for every token (~0.1 s a token), too slow for pools. Prompts are
    rendered by the model's chat template, as the gate's local side renders them.
    """
    import numpy as np
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    from driftscope_llm.services.regress.generation import prompt_ids

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    llm: Any = Llama(model_path=str(gguf), n_ctx=512, n_threads=threads, n_batch=128,
                     verbose=False, logits_all=True)
    eos = {llm.token_eos(), tok.eos_token_id}
    rng = np.random.default_rng(seed)
    out: Pool = []
    for probe in probes:
        ids = prompt_ids(tok, probe.prompt)
        row = []
        for _ in range(pool):
            llm.reset()
            llm.eval(ids)
            toks: list[int] = []
            lps: list[float] = []
            tops: list[dict[str, float]] = []
            finish = "length"
            for _ in range(max_tokens):
                logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
                logp = logits - logits.max()
                logp -= np.log(np.exp(logp).sum())
                t = int(rng.choice(len(logp), p=np.exp(logp)))
                top = np.argpartition(-logp, 5)[:5]
                tops.append({tok.convert_ids_to_tokens(int(i)): float(logp[i]) for i in top})
                if t in eos:
                    finish = "stop"
                    break
                toks.append(t)
                lps.append(float(logp[t]))
                llm.eval([t])
            row.append(Sample(probe.prompt, tok.decode(toks, skip_special_tokens=True), lps,
                              tops[: len(lps)], finish))
        out.append(row)
    return out


def draw(rng: random.Random, base: Pool, cand: Pool, samples: int) -> tuple[Pool, Pool]:
    """One run's two sides (disjoint entries when both pools are one)."""
    b_side, c_side = [], []
    for b, c in zip(base, cand, strict=True):
        if b is c:
            picked = rng.sample(range(len(b)), 2 * samples)
            b_side.append([b[i] for i in picked[:samples]])
            c_side.append([b[i] for i in picked[samples:]])
        else:
            b_side.append(rng.sample(b, samples))
            c_side.append(rng.sample(c, samples))
    return b_side, c_side


def power(base: Pool, cand: Pool, *, runs: int, samples: int, alpha: float,
          seed: int) -> tuple[int, list[str]]:
    """Failed runs out of ``runs``, and the signals that failed them."""
    rng = random.Random(seed)
    failed, why = 0, []
    for r in range(runs):
        b, c = draw(rng, base, cand, samples)
        res = run_gate(PROBES_USED, b, c, GateSettings(false_alarm_rate=alpha, seed=seed + r))
        if res.verdict == "regression":
            failed += 1
            why += [s.signal for s in res.signals if s.decision == "regression"]
    return failed, why


PROBES_USED: list[Probe] = PROBES


def _lora_checkpoints(model_dir: Path, steps: Sequence[int], out: Path) -> dict[int, Path]:
    from driftscope_llm.attribution.lora import LoraRecipe, lora_finetune

    last = max(steps)
    t0 = time.monotonic()
    lora_finetune(model_dir, UNRELATED, out, LoraRecipe(steps=last, seed=0),
                  checkpoints=steps,
                  on_step=lambda s, n, loss: print(f"  LoRA step {s}/{n}: loss {loss:.3f} "
                                                   f"({time.monotonic() - t0:.0f} s)",
                                                   file=sys.stderr, flush=True))
    return {s: out if s == last else out / f"checkpoint-{s}" for s in steps}


def main(argv: Sequence[str] | None = None) -> int:
    global PROBES_USED
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="1,4,16", help="LoRA steps to test, comma-separated")
    ap.add_argument("--runs", type=int, default=5, help="gate runs per point")
    ap.add_argument("--pool", type=int, default=8, help="pooled generations per probe")
    ap.add_argument("--probes", type=int, default=24, help="probes in the suite (max 24)")
    ap.add_argument("--samples", type=int, default=4, help="samples per probe and side")
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--no-quant", action="store_true", help="skip the quantisation swap")
    ap.add_argument("--cache-dir", type=Path, default=None, help="model cache")
    ap.add_argument("--out", type=Path, default=None, help="keep the adapters here")
    args = ap.parse_args(argv)
    from driftscope_llm.attribution.model_cache import fetch_model

    t0 = time.monotonic()
    PROBES_USED = PROBES[: args.probes]
    steps = sorted({int(s) for s in args.steps.split(",") if s})
    out = args.out or Path(tempfile.mkdtemp(prefix="gate-sensitivity-"))
    out.mkdir(parents=True, exist_ok=True)
    fetched = fetch_model("smollm2", cache_dir=args.cache_dir,
                          on_step=lambda m: print(f"  {m}", file=sys.stderr))
    timings: dict[str, float] = {"fetch": time.monotonic() - t0}
    print("LoRA fine-tune on unrelated chat data ...", file=sys.stderr)
    t = time.monotonic()
    adapters = _lora_checkpoints(fetched.model_dir, steps, out / "lora")
    timings["LoRA fine-tune"] = time.monotonic() - t

    def pool_of(name: str, make: Any) -> Pool:
        t = time.monotonic()
        print(f"sampling {name}: {args.pool} per probe ...", file=sys.stderr, flush=True)
        got: Pool = make()
        timings[name] = time.monotonic() - t
        return got

    base = pool_of("float32", lambda: make_pool_local(fetched.model_dir, PROBES_USED, args.pool,
                                                      seed=1))
    rows: list[tuple[str, int, list[str]]] = []
    null_failed, null_why = power(base, base, runs=args.runs, samples=args.samples,
                                  alpha=args.alpha, seed=7)
    rows.append(("none (float32 vs float32, disjoint draws)", null_failed, null_why))
    for s, adapter in adapters.items():
        cand = pool_of(f"LoRA {s}", lambda a=adapter, s=s: make_pool_local(
            fetched.model_dir, PROBES_USED, args.pool, seed=10 + s, adapter=a))
        failed, why = power(base, cand, runs=args.runs, samples=args.samples, alpha=args.alpha,
                            seed=100 + s)
        rows.append((f"LoRA, {s} step{'s' if s > 1 else ''} on unrelated chat data", failed,
                     why))
    if not args.no_quant:
        cand = pool_of("Q4_1 llama.cpp", lambda: make_pool_llama(
            fetched.gguf_path, fetched.model_dir, PROBES_USED, args.pool, seed=2))
        failed, why = power(base, cand, runs=args.runs, samples=args.samples, alpha=args.alpha,
                            seed=200)
        rows.append(("quantisation swap: Q4_1 GGUF (llama.cpp) vs float32", failed, why))
    print(f"SmolLM2-135M-Instruct, baseline float32; {len(PROBES_USED)} probes x "
          f"{args.samples} samples per side, max 48 new tokens, temperature 1, α = "
          f"{args.alpha:g}; {args.runs} gate runs per point from pools of {args.pool} per probe")
    print("| change against the float32 base | gate failed | power | 95 % interval | "
          "signals that failed it |")
    print("| --- | --- | --- | --- | --- |")
    for name, failed, why in rows:
        lo, hi = clopper_pearson(failed, args.runs)
        sigs = ", ".join(f"{k} ({why.count(k)})" for k in sorted(set(why))) or "—"
        print(f"| {name} | {failed}/{args.runs} | {failed / args.runs:.2f} | "
              f"{lo:.2f}–{hi:.2f} | {sigs} |")
    print("\nAnchors: log-probability tracking detects 1 fine-tuning step (arXiv 2512.03816); "
          "MMD model-equality test: 77 % median power at ~10 samples per prompt against "
          "swapped/quantised models (arXiv 2410.20247).")
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
          + f", total {time.monotonic() - t0:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
