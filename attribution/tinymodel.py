"""Tiny causal LMs built in-process (no model hub), and a response-only fine-tuning loop.

Used by the evaluation harness, the tests, the throughput benchmark and the demo. Everything is
deterministic given ``seed`` (single-process CPU; CUDA kernels may differ in the last bits).

* :func:`build_tokenizer` — a word-level tokenizer (``tokenizers``) trained on the texts, wrapped
  in ``PreTrainedTokenizerFast`` with ``[PAD] [UNK] [BOS] [EOS]``; no chat template, so examples
  use the default join rule of :mod:`driftscope_llm.attribution.formatting`.
* :func:`build_tiny_model` — tokenizer + a randomly initialised GPT-2 (``Conv1D`` layers) or
  Llama-style model, fine-tuned on the corpus; saved as a Hugging Face causal-LM directory
  (``from_pretrained`` loads it). With ``lora=True`` the base is first trained with the full
  sequence loss (a stand-in for pretraining) and then a LoRA adapter (rank 4 on ``c_attn`` for
  GPT-2, ``q_proj``/``v_proj`` for Llama) is fine-tuned on the response loss and saved in
  ``out_dir/adapter``.
* :func:`finetune` — AdamW on the mean response cross-entropy (prompt tokens masked with -100);
  with ``recipe_dir`` it records the run as a
  :class:`~driftscope_llm.attribution.recipe.ReplayRecipe` (initial trainable weights, every
  batch in order, optimizer, loss) so :mod:`driftscope_llm.attribution.replay` can replay it.
  :func:`build_tiny_model` records every fine-tune it saves (beside the model, or the adapter).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.formatting import collate
from driftscope_llm.attribution.methods.gradients import response_loss
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = [
    "Arch", "TinyModel", "build_tiny_model", "build_tokenizer", "cpu_threads", "finetune",
]

Arch = Literal["gpt2", "llama"]


@dataclass(frozen=True)
class TinyModel:
    """Where a tiny model was saved: the model directory and, with LoRA, the adapter directory."""

    model_dir: Path
    adapter_dir: Path | None


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op CPU threads (restored after); ``None`` leaves it.

    Tiny models run fastest on one thread: their matmuls are too small to split, and on a
    shared machine extra spinning threads only slow everyone down (4x measured on 2 busy cores).
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_tokenizer(texts: Iterable[str]) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` whose vocabulary is every word in ``texts``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    tok.train_from_iterator(list(texts), trainers.WordLevelTrainer(special_tokens=specials))
    bos = tok.token_to_id("[BOS]")
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A", pair="[BOS] $A $B", special_tokens=[("[BOS]", bos)]
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
        eos_token="[EOS]",
    )


def _config(arch: Arch, tokenizer: Any, *, layers: int, dim: int, max_len: int) -> Any:
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if arch == "gpt2":
        from transformers import GPT2Config

        return GPT2Config(n_layer=layers, n_embd=dim, n_head=4, n_positions=max_len,
                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **ids)
    from transformers import LlamaConfig

    return LlamaConfig(num_hidden_layers=layers, hidden_size=dim, intermediate_size=2 * dim,
                       num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=max_len, **ids)


def finetune(
    model: Any,
    tokenizer: Any,
    corpus: Sequence[Example],
    *,
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 16,
    seed: int = 0,
    max_length: int = 128,
    prompt_loss: bool = False,
    num_threads: int | None = 1,
    recipe_dir: str | Path | None = None,
) -> list[float]:
    """Train ``model`` in place on ``corpus``; returns the mean loss of each epoch.

    Loss: mean cross-entropy over response tokens (``prompt_loss=True``: over all real tokens,
    used only to "pretrain" a LoRA base). Shuffling uses ``torch.Generator(seed)``.
    ``num_threads``: CPU threads while training (:func:`cpu_threads`); ``None`` = unchanged.
    ``recipe_dir``: write the replay recipe and the initial trainable weights there (module
    docstring); a LoRA run is recognised by its trainable ``lora_`` parameters.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    init = {n: p.detach().clone().contiguous() for n, p in named} if recipe_dir else {}
    batches: list[list[int]] = []
    t0 = time.perf_counter()
    with cpu_threads(num_threads if next(model.parameters()).device.type == "cpu" else None):
        history = _train(model, tokenizer, corpus, epochs=epochs, lr=lr, batch_size=batch_size,
                         seed=seed, max_length=max_length, prompt_loss=prompt_loss,
                         batches=batches)
    if recipe_dir is not None:
        _record(Path(recipe_dir), init, corpus, batches, lr=lr, seed=seed, epochs=epochs,
                batch_size=batch_size, max_length=max_length, prompt_loss=prompt_loss,
                seconds=time.perf_counter() - t0)
    return history


def _record(out: Path, init: dict[str, torch.Tensor], corpus: Sequence[Example],
            batches: list[list[int]], *, lr: float, seed: int, epochs: int, batch_size: int,
            max_length: int, prompt_loss: bool, seconds: float) -> None:
    """Write the replay recipe of a finished :func:`finetune` run, and its initial weights."""
    from safetensors.torch import save_file

    from driftscope_llm.attribution.recipe import (
        INIT_FILE,
        AdamWRecipe,
        ReplayInit,
        ReplayRecipe,
        ordered_corpus_hash,
        write_recipe,
    )

    out.mkdir(parents=True, exist_ok=True)
    save_file({n: t.cpu() for n, t in init.items()}, str(out / INIT_FILE))
    lora = any("lora_" in n for n in init)
    write_recipe(ReplayRecipe(
        kind="lora" if lora else "full", trainable=list(init), init=ReplayInit(file=INIT_FILE),
        batches=batches, loss="sequence" if prompt_loss else "response",
        corpus_sha256=ordered_corpus_hash(corpus), examples=len(corpus), max_length=max_length,
        optimizer=AdamWRecipe(lr=lr, weight_decay=0.0), clip_grad_norm=1.0, seed=seed,
        epochs=epochs, batch_size=batch_size, seconds=seconds), out)


def _train(model: Any, tokenizer: Any, corpus: Sequence[Example], *, epochs: int, lr: float,
           batch_size: int, seed: int, max_length: int, prompt_loss: bool,
           batches: list[list[int]]) -> list[float]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    model.train()
    history = []
    for _ in range(epochs):
        order = torch.randperm(len(corpus), generator=gen).tolist()
        total, steps = 0.0, 0
        for s in range(0, len(order), batch_size):
            batches.append(order[s : s + batch_size])
            batch = collate(tokenizer, [corpus[i] for i in batches[-1]], max_length).to(device)
            labels = batch.labels
            if prompt_loss:
                labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            loss = response_loss(logits, labels).mean()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            total += float(loss.detach())
            steps += 1
        history.append(total / max(steps, 1))
    model.eval()
    return history


def build_tiny_model(
    corpus: Sequence[Example],
    out_dir: str | Path,
    *,
    arch: Arch = "gpt2",
    lora: bool = False,
    seed: int = 0,
    layers: int = 2,
    dim: int = 64,
    epochs: int = 12,
    extra_texts: Iterable[str] = (),
    max_length: int = 128,
) -> TinyModel:
    """Build, fine-tune and save a tiny model on ``corpus`` (module docstring).

    ``extra_texts`` add words to the vocabulary (e.g. the queries), nothing else.
    """
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = [t for e in corpus for t in (e.prompt, e.response)] + list(extra_texts)
    tokenizer = build_tokenizer(texts)
    torch.manual_seed(seed)
    config = _config(arch, tokenizer, layers=layers, dim=dim, max_len=max(max_length, 64))
    config._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    adapter_dir: Path | None = None
    if not lora:
        finetune(model, tokenizer, corpus, epochs=epochs, seed=seed, max_length=max_length,
                 recipe_dir=out)
        model.save_pretrained(str(out))
    else:
        from peft import LoraConfig, get_peft_model

        finetune(model, tokenizer, corpus, epochs=epochs, seed=seed, max_length=max_length,
                 prompt_loss=True)
        model.save_pretrained(str(out))
        targets = ["c_attn"] if arch == "gpt2" else ["q_proj", "v_proj"]
        lcfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets,
                          fan_in_fan_out=arch == "gpt2", task_type="CAUSAL_LM")
        torch.manual_seed(seed + 1)
        with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = get_peft_model(model, lcfg)
        adapter_dir = out / "adapter"
        finetune(peft_model, tokenizer, corpus, epochs=epochs, seed=seed + 1, lr=1e-2,
                 max_length=max_length, recipe_dir=adapter_dir)
        peft_model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(out))
    return TinyModel(out, adapter_dir)
