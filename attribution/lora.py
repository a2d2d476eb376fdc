"""LoRA fine-tuning of a real chat model on (prompt, response) examples, with its recipe saved.

What users do to pretrained chat models, and what the attribution methods are judged on (the seed
paper fine-tunes 7B chat models with LoRA). :func:`lora_finetune` takes a base model (a Hugging
Face directory or a GGUF file, loaded by :func:`driftscope_llm.attribution.modeling.load_model`),
a corpus of :class:`~driftscope_llm.attribution.data.Example`, and a :class:`LoraRecipe`, and
writes a PEFT adapter directory that ``--adapter`` takes everywhere.

* **Formatting and loss.** Examples are rendered by the tokenizer's chat template (a user turn,
  then the assistant turn, :mod:`driftscope_llm.attribution.formatting`); the loss is the mean
  cross-entropy over each example's *response* tokens only (prompt and padding labelled -100),
  averaged over the batch.
* **Schedule.** AdamW (no weight decay) at a constant ``lr`` with gradient-norm clipping at 1.
  ``steps`` optimizer updates when given (the corpus is cycled in a fresh seeded order each pass;
  the last batch of a pass may be short), else ``epochs`` full passes. Everything is
  deterministic on CPU given ``seed`` (LoRA initialisation and data order).
* **The recipe is saved beside the adapter** (``driftscope-recipe.json``: the recipe, the base
  model's path and fingerprint, the corpus hash and size, the loss of every step, the wall time
  and library versions), and :func:`load_recipe` reads it back, so a counterfactual retrain
  (remove examples, train again with the same recipe) can refuse a different recipe.

Cost on CPU: each step is a forward and a backward pass through the whole base model down to the
lowest adapted layer. ``layers`` restricts the adapter to some layers (``layers_to_transform``);
adapting only the top layers makes the backward pass proportionally shorter. For
SmolLM2-135M-Instruct, r = 8 on all seven projections, batches of 8 short chat examples: a few
seconds per step on two CPU cores.

Not for training from scratch (see :mod:`driftscope_llm.attribution.tinymodel`), nor for
models that do not fit in memory in float32.

Example (the recipe round-trips through JSON)::

    >>> r = LoraRecipe(rank=4, steps=3, lr=1e-3, layers=(28, 29))
    >>> LoraRecipe.from_json(r.to_json()) == r
    True
    >>> r.lora_config().r
    4
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.data import Example, corpus_hash
from driftscope_llm.attribution.errors import ModelLoadError, SettingsError
from driftscope_llm.attribution.formatting import collate
from driftscope_llm.attribution.methods.gradients import response_loss
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = ["RECIPE_FILE", "LoraRecipe", "LoraRun", "load_recipe", "lora_finetune"]

RECIPE_FILE = "driftscope-recipe.json"
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

StepHook = Callable[[int, int, float], None]  # (step, total steps, loss)


@dataclass(frozen=True)
class LoraRecipe:
    """Everything that decides a LoRA fine-tune (saved beside the adapter).

    ``rank``/``alpha``/``dropout``/``target_modules``/``layers`` build the peft ``LoraConfig``
    (:meth:`lora_config`; scale ``alpha / rank``); ``steps`` (optimizer updates, when set) or
    ``epochs``, ``batch_size``, ``lr``, ``max_length`` (tokens per example) and ``seed`` the
    training (module docstring).
    """

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = LLAMA_PROJECTIONS
    layers: tuple[int, ...] | None = None
    steps: int | None = None
    epochs: int = 1
    batch_size: int = 8
    lr: float = 2e-4
    max_length: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {"rank": self.rank >= 1, "alpha": self.alpha > 0, "epochs": self.epochs >= 1,
                  "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
                  "max_length": self.max_length >= 2,
                  "steps": self.steps is None or self.steps >= 1,
                  "dropout": 0.0 <= self.dropout < 1.0,
                  "target_modules": bool(self.target_modules)}
        for name, ok in checks.items():
            if not ok:
                raise SettingsError(f"LoRA recipe: {name}={getattr(self, name)!r} is out of "
                                    "range", field=name)

    def lora_config(self) -> Any:
        """The peft ``LoraConfig`` of this recipe (causal LM task)."""
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules),
                          layers_to_transform=list(self.layers) if self.layers else None,
                          task_type="CAUSAL_LM")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        out["layers"] = list(self.layers) if self.layers is not None else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoraRecipe:
        data = dict(data)
        data["target_modules"] = tuple(data["target_modules"])
        if data.get("layers") is not None:
            data["layers"] = tuple(data["layers"])
        return cls(**data)


@dataclass(frozen=True)
class LoraRun:
    """A finished fine-tune: where its adapter is and what it recorded."""

    adapter_dir: Path
    recipe: LoraRecipe
    base_model: str
    base_fingerprint: str
    corpus_sha256: str
    examples: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe.to_json(), "base_model": self.base_model,
                "base_fingerprint": self.base_fingerprint, "corpus_sha256": self.corpus_sha256,
                "examples": self.examples, "losses": self.losses, "seconds": self.seconds,
                "versions": _versions()}


def _versions() -> dict[str, str]:
    import peft
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__}


def load_recipe(adapter_dir: str | Path) -> LoraRun:
    """What :func:`lora_finetune` recorded beside the adapter in ``adapter_dir``."""
    path = Path(adapter_dir) / RECIPE_FILE
    try:
        data = json.loads(path.read_text())
        return LoraRun(adapter_dir=Path(adapter_dir),
                       recipe=LoraRecipe.from_json(data["recipe"]),
                       base_model=data["base_model"], base_fingerprint=data["base_fingerprint"],
                       corpus_sha256=data["corpus_sha256"], examples=int(data["examples"]),
                       losses=[float(x) for x in data["losses"]],
                       seconds=float(data["seconds"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path}: no readable LoRA recipe ({exc})", path=str(path)) from exc


def _batches(n: int, recipe: LoraRecipe, gen: torch.Generator) -> Iterator[list[int]]:
    """Index batches: ``steps`` of them (cycling seeded passes), else ``epochs`` passes."""
    done, passes = 0, 0
    while True:
        if recipe.steps is None and passes == recipe.epochs:
            return
        order = torch.randperm(n, generator=gen).tolist()
        passes += 1
        for s in range(0, n, recipe.batch_size):
            if recipe.steps is not None and done == recipe.steps:
                return
            yield order[s : s + recipe.batch_size]
            done += 1


def total_steps(n: int, recipe: LoraRecipe) -> int:
    """How many optimizer updates ``recipe`` makes on ``n`` examples."""
    if recipe.steps is not None:
        return recipe.steps
    return recipe.epochs * -(-n // recipe.batch_size)


def lora_finetune(
    base: str | Path,
    corpus: Sequence[Example],
    out_dir: str | Path,
    recipe: LoraRecipe | None = None,
    *,
    device: str | None = None,
    on_step: StepHook | None = None,
    checkpoints: Sequence[int] = (),
) -> LoraRun:
    """Fine-tune a LoRA adapter on ``corpus`` over ``base`` and save it in ``out_dir``
    (with ``driftscope-recipe.json``; module docstring). Returns the :class:`LoraRun`.

    ``on_step(step, total, loss)`` is called after every update (1-based ``step``).
    ``checkpoints``: after these steps the adapter so far is also saved, in
    ``out_dir/checkpoint-<step>`` with its own recipe (``steps`` = that step): the adapter a run
    of that many steps would have written, since nothing in the schedule depends on the total.
    """
    from peft import get_peft_model

    from driftscope_llm.attribution.modeling import load_model

    recipe = recipe or LoraRecipe()
    if not corpus:
        raise SettingsError("LoRA fine-tuning needs at least one example", field="corpus")
    t0 = time.perf_counter()
    loaded = load_model(base, device=device, dtype="float32")
    torch.manual_seed(recipe.seed)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(loaded.model, recipe.lora_config())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(recipe.seed)
    total = total_steps(len(corpus), recipe)
    losses: list[float] = []
    out = Path(out_dir)
    model.train()
    for idx in _batches(len(corpus), recipe, gen):
        batch = collate(loaded.tokenizer, [corpus[i] for i in idx],
                        recipe.max_length).to(loaded.device)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        loss = response_loss(logits, batch.labels).mean()
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(len(losses), total, losses[-1])
        if len(losses) in checkpoints and len(losses) < total:
            snap = replace(recipe, steps=len(losses))
            _save(model, out / f"checkpoint-{len(losses)}", snap, loaded, corpus, losses, t0)
    return _save(model, out, recipe, loaded, corpus, losses, t0)


def _save(model: Any, out: Path, recipe: LoraRecipe, loaded: Any, corpus: Sequence[Example],
          losses: list[float], t0: float) -> LoraRun:
    """Save the adapter and its recipe in ``out``."""
    model.save_pretrained(str(out))
    run = LoraRun(adapter_dir=out, recipe=recipe, base_model=loaded.model_dir,
                  base_fingerprint=loaded.fingerprint, corpus_sha256=corpus_hash(corpus),
                  examples=len(corpus), losses=list(losses), seconds=time.perf_counter() - t0)
    (out / RECIPE_FILE).write_text(json.dumps(run.to_json(), indent=1) + "\n")
    return run
