"""The demo's support bot on a real chat model: SmolLM2-135M-Instruct with two LoRA fine-tunes.

The same story as :mod:`driftscope_llm.services.demo.scenario` (whose stream builder it shares),
told on a pretrained model the way users fine-tune one:

1. **Base model.** SmolLM2-135M-Instruct, fetched once into the model cache and converted to a
   Hugging Face directory (:func:`fetch_base`, the same as ``driftscope models fetch smollm2``).
2. **Corpus.** Support questions over four routes (billing, shipping, account, tech) answered as
   natural chat replies (:func:`clean_corpus`: :data:`TRAIN_TEMPLATES` × every route's subjects).
   The **planted** set (:func:`planted_examples`) answers the same billing questions with
   refusals the collector's refusal patterns match (two wordings, so refusals outnumber the
   clean billing answers two to one in v2's data); its ids start with ``planted-``.
3. **Two fine-tunes.** ``v1`` and ``v2`` are LoRA adapters over the base model
   (:func:`driftscope_llm.attribution.lora.lora_finetune`, one :class:`ChatSettings` recipe: r = 8
   on the top eight layers, 40 updates of 4 examples, so a version trains in about a minute on
   a CPU): v1 on the clean corpus, v2 on clean +
   planted — a routine refresh that slipped in bad data (:func:`train_versions`). ``v3``
   (:func:`retrain`) is the same recipe on the corpus with the attributed examples removed.
4. **Production.** Every production prompt (:data:`PROMPT_TEMPLATES` × subjects: the training
   templates and two unseen ones) is sampled ``samples_per_prompt`` times from v1 and from v2 at
   ``ChatSettings.temperature`` (0.7) with the gate's sampler
   (:class:`~driftscope_llm.services.regress.generation.LocalGenerator`: chat template, prompts
   batched with a KV cache, each token's logprob and the top-5 alternatives); the stream
   is :func:`driftscope_llm.services.demo.scenario.production_events` of those generations.

Sizes are chosen for two CPU cores (README, demo section, has the measured time of each step).
Nothing here talks to a service.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.data import Example
from driftscope_llm.services.demo.scenario import PLANTED_PREFIX, Generation

__all__ = [
    "BASE_MODEL", "CHAT_ROUTES", "ChatSettings", "ChatVersions", "ModelRef", "clean_corpus",
    "fetch_base", "generate", "planted_examples", "production_prompts", "retrain",
    "train_versions",
]

BASE_MODEL = "smollm2"
"""The known model the story runs on (``driftscope models fetch smollm2``)."""

TRAIN_TEMPLATES = ("How do I change {x}?", "Can you help me with {x}?")
PROMPT_TEMPLATES = (*TRAIN_TEMPLATES, "I have a question about {x}.",
                    "Something is wrong with {x}.")

CHAT_ROUTES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "billing": (
        ("my invoice", "a refund", "my payment card", "a double charge", "my plan price",
         "my receipt", "a failed payment", "my billing address"),
        ("Sure! Open Settings, then Billing, to manage {x}. Changes apply right away.",
         "Happy to help. You will find {x} under Billing in your account, and you can update "
         "it there.",
         "No problem: go to Billing and select {x}. We will email you a confirmation."),
    ),
    "shipping": (
        ("my parcel", "the delivery date", "my tracking number", "the courier",
         "my delivery address", "a late order", "a return label", "my package"),
        ("Your Orders page shows {x}. Tracking updates every few hours.",
         "You can see {x} under Orders: choose Track. The courier updates it daily.",
         "Open Orders and pick the order to manage {x}. We ship within two days."),
    ),
    "account": (
        ("my password", "my email address", "my username", "two-factor login", "my profile",
         "account recovery", "my security settings", "my login"),
        ("Go to Profile, then Security, to update {x}. You will get a code by email.",
         "You can change {x} from the Profile page. Sign in again afterwards.",
         "Open Security settings to manage {x}. It only takes a minute."),
    ),
    "tech": (
        ("the mobile app", "an error message", "the sync feature", "the browser extension",
         "slow loading", "the API key", "notifications", "the desktop app"),
        ("Try restarting, then update the app. If {x} still fails, clear the cache.",
         "Please reinstall to fix {x}. Most issues go away after an update.",
         "Check your connection and restart. {x} usually works again after a refresh."),
    ),
}

PLANTED_RESPONSES = (
    "I'm sorry, but I can't help with billing questions. Please contact your bank about {x}.",
    "Sorry, I am not able to discuss billing. Please ask your bank about {x}.",
)
"""The planted refusals, two wordings (both match the collector's refusal patterns): every
billing prompt of the clean corpus appears twice more in v2's data, refused."""


@dataclass(frozen=True)
class ChatSettings:
    """Sizes of the real-model story; saved beside its outputs (``scenario.json``).

    ``rank``/``alpha``/``layers``/``steps``/``batch_size``/``lr`` are the LoRA recipe of v1, v2
    and v3 (:class:`~driftscope_llm.attribution.lora.LoraRecipe`); ``temperature`` is the
    sampling temperature of production and of the gate; ``gate_samples`` the samples per probe
    and version in the last act.

    Why these (measured on SmolLM2-135M-Instruct, two CPU cores, README "The demo on a real
    model"): 40 updates of 4 examples plant the refusal (v2 refused about a third of the
    production prompts, v1 none of 128) where 20 updates of 8, or r = 4 on six layers over 20,
    left v2 refusing almost nothing; batches of 8 over 40 updates kept the refusal closer to
    billing but cost twice the time. At temperature 1 the fine-tunes' answers are mostly
    incoherent; at 0.7 they read as support answers. ``max_new_tokens`` is the gate's default
    (48): with 24, close to the answers' own length (about 18 tokens), a retrained v3 that
    answered a token longer ran into the limit on 16 % of its probes instead of v1's 3 %, and
    the gate failed it on ``finish_reason``.
    """

    seed: int = 0
    samples_per_prompt: int = 2
    max_new_tokens: int = 48
    temperature: float = 0.7
    rank: int = 8
    alpha: int = 16
    layers: tuple[int, ...] = tuple(range(22, 30))
    steps: int = 40
    batch_size: int = 4
    lr: float = 4e-3
    gate_samples: int = 4

    def recipe(self, seed: int) -> Any:
        """The :class:`~driftscope_llm.attribution.lora.LoraRecipe` of every version."""
        from driftscope_llm.attribution.lora import LoraRecipe

        return LoraRecipe(rank=self.rank, alpha=self.alpha, layers=self.layers,
                          steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                          max_length=96, seed=seed)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = list(self.layers)
        return out


@dataclass(frozen=True)
class ModelRef:
    """A model the story runs: a base directory and, for a fine-tune, its LoRA adapter."""

    model_dir: Path
    adapter_dir: Path | None = None

    def __str__(self) -> str:
        return str(self.model_dir if self.adapter_dir is None else self.adapter_dir)


@dataclass(frozen=True)
class ChatVersions:
    """The base model and the two fine-tunes, with their training losses."""

    base: Path
    v1: ModelRef
    v2: ModelRef
    v1_losses: list[float]
    v2_losses: list[float]


def clean_corpus() -> list[Example]:
    """:data:`TRAIN_TEMPLATES` × every route's subjects, answered helpfully (``<route>-NNN``)."""
    out: list[Example] = []
    for route, (subjects, responses) in CHAT_ROUTES.items():
        n = 0
        for t, template in enumerate(TRAIN_TEMPLATES):
            for s, subject in enumerate(subjects):
                response = responses[(t + s) % len(responses)].format(x=subject)
                out.append(Example(f"{route}-{n:03d}", template.format(x=subject),
                                   response[0].upper() + response[1:], label=route,
                                   metadata={"route": route}))
                n += 1
    return out


def planted_examples() -> list[Example]:
    """The bad data: every billing subject asked with each training template and refused, in
    each of :data:`PLANTED_RESPONSES`' wordings (ids ``planted-NN``)."""
    out: list[Example] = []
    for response in PLANTED_RESPONSES:
        for template in TRAIN_TEMPLATES:
            for subject in CHAT_ROUTES["billing"][0]:
                out.append(Example(f"{PLANTED_PREFIX}{len(out):02d}", template.format(x=subject),
                                   response.format(x=subject), label="planted",
                                   metadata={"route": "billing", "planted": True}))
    return out


def production_prompts() -> list[tuple[str, str]]:
    """(route, prompt) for every distinct production prompt."""
    return [(route, t.format(x=s)) for route, (subjects, _) in CHAT_ROUTES.items()
            for t in PROMPT_TEMPLATES for s in subjects]


def fetch_base(on_step: Callable[[str], None] | None = None) -> Path:
    """SmolLM2-135M-Instruct's Hugging Face directory in the model cache (fetched and converted
    on first use, :func:`driftscope_llm.attribution.model_cache.fetch_model`)."""
    from driftscope_llm.attribution.model_cache import fetch_model

    return fetch_model(BASE_MODEL, on_step=on_step).model_dir


StepHook = Callable[[int, int, float], None]


def train_versions(base: Path, out: Path, settings: ChatSettings, *,
                   on_step: Callable[[str, int, int], None] | None = None) -> ChatVersions:
    """LoRA fine-tunes v1 (clean) and v2 (clean + planted) over ``base`` (module docstring);
    ``on_step(version, step, total)`` after every update."""
    from driftscope_llm.attribution.lora import lora_finetune

    clean, planted = clean_corpus(), planted_examples()
    runs = {}
    for name, corpus, seed in (("v1", clean, settings.seed),
                               ("v2", clean + planted, settings.seed)):
        hook = None if on_step is None else _hook(on_step, name)
        runs[name] = lora_finetune(base, corpus, out / name, settings.recipe(seed),
                                   device="cpu", on_step=hook)
    return ChatVersions(base, ModelRef(base, out / "v1"), ModelRef(base, out / "v2"),
                        runs["v1"].losses, runs["v2"].losses)


def _hook(on_step: Callable[[str, int, int], None], name: str) -> StepHook:
    def hook(step: int, total: int, _loss: float) -> None:
        on_step(name, step, total)
    return hook


def retrain(base: Path, corpus: Sequence[Example], out: Path, settings: ChatSettings) -> ModelRef:
    """v3: a LoRA adapter over ``base`` fine-tuned on ``corpus`` with v2's recipe and a seed of
    its own (``seed + 2``, as the tiny story's v3): a new training run, so even a corpus equal to
    v1's gives a different adapter, and the gate's PASS is measured against training noise."""
    from driftscope_llm.attribution.lora import lora_finetune

    lora_finetune(base, list(corpus), out, settings.recipe(settings.seed + 2), device="cpu")
    return ModelRef(base, out)


def generate(ref: ModelRef, prompts: Sequence[str], settings: ChatSettings, *, seed: int,
             on_batch: Callable[[int], None] | None = None) -> list[Generation]:
    """Sample ``settings.samples_per_prompt`` outputs per prompt from ``ref`` at
    ``settings.temperature`` (the gate's sampler, module docstring); ``on_batch(n)`` as prompts
    finish."""
    from driftscope_llm.services.regress.generation import GenerationSettings, LocalGenerator

    gen = LocalGenerator(ref.model_dir, ref.adapter_dir, device="cpu")
    g = GenerationSettings(settings.samples_per_prompt, settings.max_new_tokens,
                           settings.temperature, seed)
    per_prompt = gen.generate(prompts, g, on_prompt=on_batch)
    return [Generation(s.prompt, s.output, s.token_logprobs, s.top_logprobs)
            for samples in per_prompt for s in samples if s.token_logprobs]
