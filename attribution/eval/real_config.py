"""The family suite on a real model: SmolLM2-135M-Instruct fine-tuned with LoRA (``smollm2/lora``).

The tiny configurations of :mod:`driftscope_llm.attribution.eval.suite` learn the corpus from
scratch; users fine-tune *pretrained chat models* with LoRA, whose hidden states and gradients
carry everything pretraining put there. This configuration measures the same identification
metrics (Acc, Cover, auPRC with bootstrap intervals) on such a model:

* **Model.** A known model of :mod:`driftscope_llm.attribution.model_cache` (``smollm2``:
  SmolLM2-135M-Instruct, 30 layers, ChatML), fetched and converted once into the model cache.
* **Data.** The same families (:mod:`driftscope_llm.attribution.eval.families`), generated
  smaller (:data:`REAL_SIZES`: 80–84 corpus examples and 8–18 queries per family, so a
  fine-tune and every method fit on two shared CPU cores) and rendered through the model's
  chat template (:mod:`driftscope_llm.attribution.formatting`: a user turn, then the assistant
  turn; only the assistant part is the response).
* **Fine-tune.** One LoRA adapter per (family, seed) with
  :func:`driftscope_llm.attribution.lora.lora_finetune` (response-only loss), recipe
  :attr:`RealConfig.recipe` with the suite's seed.

Counterfactual metrics (QLD, LDS) need the fine-tune retrained once per removal set and LDS
subset — here a LoRA fine-tune of the real model each time — so the suite does not compute them
for this configuration; :func:`counterfactual_cost` states what they would cost, from the
measured fine-tune. ``magic`` (exact replay) is refused for it too: it replays tiny fine-tunes.

Example (sizes and names, no model needed)::

    >>> cfg = REAL_CONFIGS["smollm2/lora"]
    >>> cfg.name, cfg.recipe.epochs
    ('smollm2/lora', 1)
    >>> t = real_task("style", seed=0)
    >>> len(t.corpus), len(t.queries)
    (80, 16)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.data import Example, corpus_hash
from driftscope_llm.attribution.errors import ModelLoadError
from driftscope_llm.attribution.eval.families import FAMILIES
from driftscope_llm.attribution.eval.labelled_task import Task
from driftscope_llm.attribution.eval.tasks import TASKS
from driftscope_llm.attribution.lora import LoraRecipe, LoraRun, load_recipe, lora_finetune
from driftscope_llm.attribution.model_cache import KNOWN_MODELS, fetch_model
from driftscope_llm.attribution.modeling import LoadedModel, load_model

__all__ = ["REAL_CONFIGS", "REAL_SIZES", "RealConfig", "RealModel", "build_real_model",
           "counterfactual_cost", "real_task"]

Log = Callable[[str], None]

#: Generator arguments per family for the real configuration (about 80 corpus examples each).
REAL_SIZES: dict[str, dict[str, int]] = {
    "style": {"per_class": 20, "queries_per_class": 4},
    "rule": {"per_class": 20, "queries_per_class": 4},
    "trigger": {"n_clean": 72, "n_trigger": 8, "n_queries": 8},
    "topic": {"per_class": 14, "queries_per_class": 3},
    "harmful": {"n_benign": 72, "n_harmful": 8, "n_queries": 8},
    "class": {"per_class": 20, "queries_per_class": 4},
    "backdoor": {"n_clean": 72, "n_backdoor": 8, "n_queries": 8},
}


@dataclass(frozen=True)
class RealConfig:
    """A real-model configuration: a known model (``model_cache.KNOWN_MODELS``) and the LoRA
    recipe every (family, seed) fine-tune uses (its ``seed`` replaced by the suite's)."""

    model: str = "smollm2"
    recipe: LoraRecipe = field(default_factory=lambda: LoraRecipe(
        rank=8, alpha=16, epochs=1, batch_size=8, lr=1e-3, max_length=96))

    @property
    def name(self) -> str:
        return f"{self.model if self.model in KNOWN_MODELS else Path(self.model).name}/lora"


#: The real configurations ``--configs`` accepts by name.
REAL_CONFIGS: dict[str, RealConfig] = {"smollm2/lora": RealConfig()}


@dataclass(frozen=True)
class RealModel:
    """A fine-tuned real model ready to score: its task, the loaded model and the LoRA run."""

    task: Task
    model: LoadedModel
    run: LoraRun


def real_task(family: str, seed: int) -> Task:
    """``family`` generated at :data:`REAL_SIZES` for ``seed`` (KeyError for an unknown name)."""
    gen: Any = FAMILIES.get(family) or TASKS.get(family)
    if gen is None or family not in REAL_SIZES:
        raise KeyError(f"unknown task {family!r}; choose from {', '.join(REAL_SIZES)}")
    task: Task = gen(seed, **REAL_SIZES[family])
    return task


def build_real_model(cfg: RealConfig, family: str, seed: int, run_dir: Path, *,
                     cache_dir: Path | None = None, log: Log | None = None) -> RealModel:
    """Fetch ``cfg.model`` (once), fine-tune a LoRA adapter on ``family``'s corpus for ``seed``
    into ``run_dir/adapter`` and load base + adapter on the CPU for scoring.

    ``cfg.model`` is a known model's name or a path (a Hugging Face directory or GGUF file).
    An adapter already in ``run_dir/adapter`` whose saved recipe, base model and corpus hash
    are this run's is reused (a ``--workdir`` run resumes without fine-tuning again)."""
    task = real_task(family, seed)
    base = fetch_model(cfg.model, cache_dir=cache_dir).model_dir \
        if cfg.model in KNOWN_MODELS else Path(cfg.model)
    recipe = replace(cfg.recipe, seed=seed)
    t0 = time.perf_counter()
    run = _finished(run_dir / "adapter", recipe, task.corpus, base) or lora_finetune(
        base, task.corpus, run_dir / "adapter", recipe, device="cpu")
    if log:
        log(f"{family} {cfg.name} seed {seed}: LoRA fine-tune of {len(run.losses)} steps on "
            f"{len(task.corpus)} examples in {time.perf_counter() - t0:.0f}s, loss "
            f"{run.losses[0]:.2f} -> {run.losses[-1]:.2f}")
    return RealModel(task, load_model(base, run.adapter_dir, device="cpu"), run)


def _finished(adapter: Path, recipe: LoraRecipe, corpus: Sequence[Example],
              base: Path) -> LoraRun | None:
    """The run already saved in ``adapter`` when it is exactly this one, else ``None``."""
    try:
        run = load_recipe(adapter)
    except ModelLoadError:
        return None
    same = (run.recipe == recipe and run.corpus_sha256 == corpus_hash(corpus)
            and Path(run.base_model).resolve() == base.resolve())
    return run if same else None


def counterfactual_cost(run_seconds: float, methods: int, cf_seeds: int,
                        lds_subsets: int) -> tuple[int, float]:
    """(retrains, seconds) that QLD and LDS would need on one family, as the suite counts them
    (``(methods + 2) × cf_seeds`` full-corpus retrains: each removal set, the full corpus and
    the same-label set, per seed; plus ``lds_subsets`` half-corpus retrains), each full one
    costing about ``run_seconds`` and a half-corpus one about half."""
    full = (methods + 2) * cf_seeds
    return full + lds_subsets, run_seconds * (full + lds_subsets / 2)
