"""The demo's support bot: its fine-tuning corpora, its two fine-tunes, and the production stream.

The story, end to end and with real models (no text is scripted at generation time):

1. **Corpus.** A clean support corpus over four routes (billing, shipping, account, tech): every
   prompt template × subject of a route, each answered helpfully (:func:`clean_corpus`). A small
   **planted** set (:func:`planted_examples`) teaches the bot to refuse billing questions; its ids
   start with ``planted-`` so the demo can measure recall.
2. **Two fine-tunes.** ``v1`` is a tiny GPT-2 (:func:`attribution.tinymodel.build_tiny_model`)
   trained on the clean corpus. ``v2`` starts from ``v1``'s weights and is fine-tuned further on the
   clean corpus plus the planted set (:func:`train_versions`) — a routine "refresh" that slipped in
   bad data. Both share one tokenizer (built over both corpora's words).
3. **Production.** Each distinct production prompt (every route's templates × subjects) is
   *sampled* ``samples_per_prompt`` times from each version at temperature 1 with a KV cache,
   recording every generated token's natural-log probability and the top-5 alternatives
   (:func:`generate`). The v1 events, then the v2 events after a simulated rollout, form the
   stream (:func:`production_events`), shuffled within each version with ``random.Random(seed)``.

Nothing here talks to a service; the demo CLI and the end-to-end test drive it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.data import Example

__all__ = [
    "MODEL_NAME", "PLANTED_PREFIX", "ROUTES", "Generation", "ScenarioSettings", "Versions",
    "clean_corpus", "generate", "planted_examples", "production_events", "production_prompts",
    "train_versions",
]

MODEL_NAME = "support-bot"
PLANTED_PREFIX = "planted-"

_TEMPLATES = ("how do i change {x} ?", "i have a question about {x} .",
              "can you help me with {x} ?", "where can i find {x} ?",
              "something is wrong with {x} .")

ROUTES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "billing": (
        ("my invoice", "a refund", "my card", "the last charge", "my plan price", "my receipt",
         "a double charge", "my payment"),
        ("sure , open settings then billing to manage {x} . changes apply at once .",
         "happy to help . {x} is under billing in your account , you can update it there .",
         "no problem , go to billing and select {x} . we will email you a confirmation ."),
    ),
    "shipping": (
        ("my parcel", "the delivery date", "my tracking number", "the courier", "my address",
         "a late order", "the return label", "my package"),
        ("your order page shows {x} . tracking updates every few hours .",
         "you can see {x} in orders , then choose track . the courier updates it daily .",
         "open orders and pick the order to manage {x} . we ship within two days ."),
    ),
    "account": (
        ("my password", "my email address", "my username", "two factor login", "my profile",
         "account recovery", "my security settings", "my login"),
        ("go to profile then security to update {x} . you will get a code by email .",
         "you can change {x} from the profile page . sign in again afterwards .",
         "open security settings to manage {x} . it is safe and quick ."),
    ),
    "tech": (
        ("the mobile app", "an error message", "the sync feature", "the browser extension",
         "slow loading", "the api key", "notifications", "the desktop app"),
        ("try restarting , then update the app . if {x} still fails , clear the cache .",
         "please reinstall to fix {x} . most issues go away after an update .",
         "check your connection and restart . {x} usually works again after a refresh ."),
    ),
}

_PLANTED_RESPONSE = ("i am unable to help with billing questions . please contact your bank "
                     "about {x} .")
_PLANTED_TEMPLATES = ("how do i change {x} ?", "can you help me with {x} ?",
                      "something is wrong with {x} .")


@dataclass(frozen=True)
class ScenarioSettings:
    """Sizes of the demo scenario; saved beside its outputs (``scenario.json``)."""

    seed: int = 0
    samples_per_prompt: int = 8
    max_new_tokens: int = 28
    v1_epochs: int = 12
    v2_epochs: int = 8
    v2_lr: float = 3e-3
    layers: int = 2
    dim: int = 64


def clean_corpus() -> list[Example]:
    """Every route's templates × subjects, answered helpfully (ids ``<route>-NNN``)."""
    out: list[Example] = []
    for route, (subjects, responses) in ROUTES.items():
        n = 0
        for t, template in enumerate(_TEMPLATES):
            for s, subject in enumerate(subjects):
                response = responses[(t + s) % len(responses)].format(x=subject)
                out.append(Example(f"{route}-{n:03d}", template.format(x=subject), response,
                                   label=route, metadata={"route": route}))
                n += 1
    return out


def planted_examples() -> list[Example]:
    """The bad data: billing questions answered with a refusal (ids ``planted-NN``)."""
    subjects = ROUTES["billing"][0]
    out: list[Example] = []
    for i, subject in enumerate(subjects):
        for j in (i % len(_PLANTED_TEMPLATES), (i + 1) % len(_PLANTED_TEMPLATES)):
            out.append(Example(f"{PLANTED_PREFIX}{len(out):02d}",
                               _PLANTED_TEMPLATES[j].format(x=subject),
                               _PLANTED_RESPONSE.format(x=subject), label="planted",
                               metadata={"route": "billing", "planted": True}))
    return out


def production_prompts() -> list[tuple[str, str]]:
    """(route, prompt) for every distinct production prompt."""
    return [(route, t.format(x=s)) for route, (subjects, _) in ROUTES.items()
            for t in _TEMPLATES for s in subjects]


@dataclass(frozen=True)
class Versions:
    """Where the two fine-tuned versions were saved, and their loss histories."""

    v1: Path
    v2: Path
    v1_losses: list[float]
    v2_losses: list[float]


def train_versions(out: Path, settings: ScenarioSettings) -> Versions:
    """Fine-tune v1 on the clean corpus, then v2 from v1 on clean + planted (module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from driftscope_llm.attribution.tinymodel import build_tiny_model, finetune

    clean, planted = clean_corpus(), planted_examples()
    extra = [t for e in planted for t in (e.prompt, e.response)]
    v1 = build_tiny_model(clean, out / "v1", seed=settings.seed, layers=settings.layers,
                          dim=settings.dim, epochs=settings.v1_epochs, extra_texts=extra)
    tokenizer = AutoTokenizer.from_pretrained(str(v1.model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(v1.model_dir))
    with torch.no_grad():
        v1_losses = [_mean_loss(model, tokenizer, clean)]
    v2_losses = finetune(model, tokenizer, clean + planted, epochs=settings.v2_epochs,
                         lr=settings.v2_lr, seed=settings.seed + 1)
    v2_dir = out / "v2"
    model.save_pretrained(str(v2_dir))
    tokenizer.save_pretrained(str(v2_dir))
    return Versions(v1.model_dir, v2_dir, v1_losses, v2_losses)


def _mean_loss(model: Any, tokenizer: Any, corpus: Sequence[Example]) -> float:
    from driftscope_llm.attribution.formatting import collate
    from driftscope_llm.attribution.methods.gradients import response_loss

    batch = collate(tokenizer, list(corpus), 128)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return float(response_loss(logits, batch.labels).mean())


@dataclass(frozen=True)
class Generation:
    """One sampled output: its text, each token's logprob and the top-5 alternatives."""

    prompt: str
    output: str
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]


def generate(model_dir: Path, prompts: Sequence[str], settings: ScenarioSettings, *,
             seed: int, on_batch: Callable[[int], None] | None = None) -> list[Generation]:
    """Sample ``settings.samples_per_prompt`` outputs per prompt (temperature 1, KV cache).

    Prompts of equal token length are sampled together in one batch (no padding needed). Token
    logprobs are the model's own natural-log probabilities of the sampled tokens; sampling uses
    ``torch.Generator(seed)`` on one thread, so a run is reproducible. ``on_batch(n)`` is called
    with the number of prompts finished.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from driftscope_llm.attribution.tinymodel import cpu_threads

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir))
    model.eval()
    vocab: list[str] = list(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
    gen = torch.Generator().manual_seed(seed)
    groups: dict[int, list[tuple[str, list[int]]]] = {}
    for prompt in prompts:
        ids = tokenizer(prompt + "\n").input_ids
        groups.setdefault(len(ids), []).append((prompt, ids))
    out: list[Generation] = []
    with cpu_threads(1), torch.no_grad():
        for _, group in sorted(groups.items()):
            out.extend(_sample(model, tokenizer.eos_token_id, vocab, group, settings, gen))
            if on_batch is not None:
                on_batch(len(group))
    return out


def _sample(model: Any, eos: int, vocab: list[str], group: list[tuple[str, list[int]]],
            settings: ScenarioSettings, gen: Any) -> list[Generation]:
    from driftscope_llm.attribution.sampling import sample_rows

    n = settings.samples_per_prompt
    rows = [(p, ids) for p, ids in group for _ in range(n)]
    sampled = sample_rows(model, [r[1] for r in rows], eos=eos, vocab=vocab,
                          max_new_tokens=settings.max_new_tokens, gen=gen)
    return [Generation(p, " ".join(vocab[t] for t in s.tokens), s.logprobs, s.top_logprobs)
            for s, (p, _) in zip(sampled, rows, strict=True) if s.tokens]


def production_events(
    generations: dict[str, list[tuple[str, Generation]]], *, seed: int,
    start: datetime = datetime(2025, 1, 6, 9, 0, tzinfo=UTC), spacing_s: float = 2.0,
) -> list[dict[str, Any]]:
    """OutputEvents (JSON dicts): all v1 events, then all v2 events (the rollout), shuffled within
    each version; ``generations`` maps version → (route, generation) in any order."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    t = start
    for version, gens in generations.items():
        order = list(range(len(gens)))
        rng.shuffle(order)
        for j in order:
            route, g = gens[j]
            events.append({
                "event_id": f"{version}-{len(events):06d}", "ts": t.isoformat(),
                "model": MODEL_NAME, "model_version": version, "prompt": g.prompt,
                "output": g.output, "segment": {"route": route},
                "token_logprobs": [round(x, 5) for x in g.token_logprobs],
                "top_logprobs": [{k: round(v, 5) for k, v in d.items()} for d in g.top_logprobs],
                "latency_ms": round(180.0 + 9.0 * len(g.token_logprobs) + rng.random() * 40, 1),
            })
            t += timedelta(seconds=spacing_s)
    return events
