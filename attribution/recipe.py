"""The replay recipe: everything needed to re-run a fine-tune step for step (exact replay, MAGIC).

A fine-tune is *replayable* when its trainable weights at the start, the batches in the order
they were used, the loss, the optimizer with its hyperparameters and the schedule are known: then
:mod:`driftscope_llm.attribution.replay` can run the same updates again (bit for bit on CPU) and
differentiate the result with respect to each example's weight in the loss. driftscope's own
fine-tune helpers write a :class:`ReplayRecipe` beside what they save
(:func:`driftscope_llm.attribution.tinymodel.finetune` with ``recipe_dir``); a user can write one
for their own run (this model is the documented format, ``driftscope-replay.json``).

What each field means for the replay:

* ``kind`` — ``full``: every parameter listed in ``trainable`` was trained from ``init``;
  ``lora``: only the adapter (the names in ``trainable``) was trained on a frozen base.
* ``trainable`` — parameter names (``named_parameters()`` of the trained module) in the order the
  optimizer saw them; the gradient-norm clip sums over them in this order.
* ``init`` — where the trainable weights started: ``file`` (a safetensors file beside the recipe
  holding exactly the ``trainable`` tensors) or ``seed`` (LoRA only: ``torch.manual_seed(seed)``
  then ``peft.get_peft_model(base, adapter_config)`` recreates the initial adapter).
* ``batches`` — corpus positions of each optimizer step's batch, in order (the data order).
* ``loss`` — ``response``: each example's mean cross-entropy over its response tokens (prompt
  and padding labelled -100), averaged over the batch; ``sequence``: the same over every real
  token. The replay weights example ``i``'s term by ``w_i`` (1 in the recorded run).
* ``optimizer`` — AdamW (``torch.optim.AdamW``, single-tensor path) with a constant learning
  rate; ``clip_grad_norm`` is the max norm of ``torch.nn.utils.clip_grad_norm_`` (``None``: no
  clipping).
* ``corpus_sha256`` / ``examples`` — the corpus the positions refer to, *in its order*
  (:func:`ordered_corpus_hash`); a replay on another corpus, or the same one reordered, is
  refused.
* ``seconds`` — the fine-tune's wall time, so a replay can state its cost as a ratio.

Example (a recipe round-trips through its JSON file)::

    >>> r = ReplayRecipe(kind="full", trainable=["w"], init=ReplayInit(file="init.safetensors"),
    ...                  batches=[[1, 0], [2]], loss="response", corpus_sha256="ab",
    ...                  examples=3, max_length=16,
    ...                  optimizer=AdamWRecipe(lr=1e-3), clip_grad_norm=1.0)
    >>> ReplayRecipe.model_validate_json(r.model_dump_json()) == r
    True
    >>> r.steps
    2
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.errors import ModelLoadError

__all__ = ["INIT_FILE", "RECIPE_FILE", "AdamWRecipe", "ReplayInit", "ReplayRecipe",
           "ordered_corpus_hash", "read_recipe", "write_recipe"]

#: the recipe's file name, beside the model directory (full fine-tune) or the adapter (LoRA)
RECIPE_FILE = "driftscope-replay.json"
#: the initial trainable weights driftscope's helpers save beside the recipe
INIT_FILE = "driftscope-replay-init.safetensors"


class AdamWRecipe(BaseModel):
    """``torch.optim.AdamW``'s hyperparameters (constant learning rate, no AMSGrad)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["adamw"] = "adamw"
    lr: float = Field(gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)


class ReplayInit(BaseModel):
    """Where the trainable weights started: a file beside the recipe, or a LoRA seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | None = None
    seed: int | None = None

    @model_validator(mode="after")
    def _one(self) -> ReplayInit:
        if (self.file is None) == (self.seed is None):
            raise ValueError("init needs exactly one of file and seed")
        if self.file is not None and Path(self.file).name != self.file:
            raise ValueError(f"init.file must be a plain file name, not {self.file!r}")
        return self


class ReplayRecipe(BaseModel):
    """A replayable fine-tune (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    kind: Literal["full", "lora"]
    trainable: list[str] = Field(min_length=1)
    init: ReplayInit
    batches: list[list[int]] = Field(min_length=1)
    loss: Literal["response", "sequence"] = "response"
    corpus_sha256: str
    examples: int = Field(ge=1)
    max_length: int = Field(ge=2)
    optimizer: AdamWRecipe
    schedule: Literal["constant"] = "constant"
    clip_grad_norm: float | None = Field(default=None, gt=0)
    seed: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    seconds: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _positions(self) -> ReplayRecipe:
        for step, batch in enumerate(self.batches):
            if not batch or min(batch) < 0 or max(batch) >= self.examples:
                raise ValueError(f"batch {step} holds positions outside 0..{self.examples - 1} "
                                 "(or is empty)")
        if self.init.seed is not None and self.kind != "lora":
            raise ValueError("init.seed recreates only a LoRA adapter; a full fine-tune needs "
                             "init.file")
        return self

    @property
    def steps(self) -> int:
        """Optimizer updates in the recorded run."""
        return len(self.batches)


def ordered_corpus_hash(examples: Sequence[Example]) -> str:
    """sha256 over (id, prompt, response) of every example *in order* (batch positions index
    the corpus, so unlike :func:`~driftscope_llm.attribution.data.corpus_hash` order counts)."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.id, e.prompt, e.response], ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def write_recipe(recipe: ReplayRecipe, directory: str | Path) -> Path:
    """Write ``recipe`` as ``directory/driftscope-replay.json``; the path."""
    path = Path(directory) / RECIPE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(recipe.model_dump_json(indent=1) + "\n")
    return path


def read_recipe(directory: str | Path) -> ReplayRecipe:
    """The recipe in ``directory``; :class:`ModelLoadError` (naming the path) when there is none
    or it does not validate."""
    path = Path(directory) / RECIPE_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: no replay recipe (the fine-tune is not replayable; "
                             "driftscope's fine-tune helpers write one)", path=str(path))
    try:
        return ReplayRecipe.model_validate_json(path.read_text())
    except (OSError, ValidationError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: unusable replay recipe: {exc}", path=str(path)) from exc
