"""Sample real generations with token logprobs from SmolLM2-135M-Instruct (llama.cpp, CPU).

Used by :mod:`benchmarks.real_outputs`. Each condition is a system prompt and, optionally, a
GGUF LoRA adapter applied by llama.cpp at load time (``lora_path``). Generation is a plain
sampling loop on llama.cpp's low-level ``eval``: ChatML prompt, temperature sampling from the
model's softmax, stop at ``<|im_end|>`` or after ``max_new_tokens``. Per generated token it
records the token's log-probability under the model's own distribution (temperature 1, what an
OpenAI-style ``logprobs`` field reports) and the ``top_k`` most likely alternatives.

Why not ``Llama.create_chat_completion(logprobs=True)``: it needs ``logits_all`` and took 7.6 s
for 24 tokens where this loop takes about 3 s (measured here, one thread, a loaded machine);
transformers' batched ``generate`` (float32, 32 prompts) took 9.8 s per generation.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Condition", "Job", "SamplingSettings", "sample_one"]

IM_START, IM_END = 1, 2  # SmolLM2's ChatML special tokens (<|im_end|> is its EOS)


@dataclass(frozen=True)
class SamplingSettings:
    """Everything that decides the sampled stream (saved beside it)."""

    model_file: str
    model_sha256: str
    temperature: float = 0.7
    max_new_tokens: int = 48
    top_k_logprobs: int = 5
    seed: int = 0
    threads_per_worker: int = 1
    workers: int = 2
    n_ctx: int = 512

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Condition:
    """What the model is asked to be: a system prompt and an optional GGUF LoRA adapter."""

    name: str
    system: str
    model_version: str
    adapter: str | None = None  # path of a GGUF adapter file


@dataclass(frozen=True)
class Job:
    index: int
    condition: Condition
    route: str
    prompt_id: int
    prompt: str


_MODELS: dict[str | None, Any] = {}


def _model(settings: SamplingSettings, adapter: str | None) -> Any:
    import llama_cpp

    llm = _MODELS.get(adapter)
    if llm is None:
        kw: dict[str, Any] = {"lora_path": adapter} if adapter else {}
        llm = _MODELS[adapter] = llama_cpp.Llama(
            model_path=settings.model_file, n_ctx=settings.n_ctx,
            n_threads=settings.threads_per_worker, n_threads_batch=settings.threads_per_worker,
            verbose=False, **kw)
    return llm


def chatml(system: str, user: str) -> str:
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


def sample_one(settings: SamplingSettings, job: Job) -> dict[str, Any]:
    """One generation as an OutputEvent dict (JSON-ready)."""
    import llama_cpp

    llm = _model(settings, job.condition.adapter)
    n_vocab = llm.n_vocab()
    rng = random.Random(f"{settings.seed}|{job.condition.name}|{job.index}")
    t0 = time.perf_counter()
    llm.reset()
    tokens = llm.tokenize(chatml(job.condition.system, job.prompt).encode(), add_bos=False,
                          special=True)
    llm.eval(tokens)
    out: list[int] = []
    logprobs: list[float] = []
    tops: list[dict[str, float]] = []
    finish = "length"
    for _ in range(settings.max_new_tokens):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                       shape=(n_vocab,)).astype(np.float64)
        m = logits.max()
        lse = m + math.log(float(np.exp(logits - m).sum()))
        logp = logits - lse
        scaled = (logits - m) / settings.temperature
        p = np.exp(scaled)
        p /= p.sum()
        tok = int(np.searchsorted(np.cumsum(p), rng.random() * 1.0, side="right"))
        tok = min(tok, len(p) - 1)
        if tok == IM_END:
            finish = "stop"
            break
        out.append(tok)
        logprobs.append(min(0.0, float(logp[tok])))
        k = settings.top_k_logprobs
        best = np.argpartition(-logp, k)[:k]
        alts: dict[str, float] = {}
        for t in best:
            key = _piece(llm, int(t))
            alts[key if key not in alts else f"{key}<{int(t)}>"] = min(0.0, float(logp[t]))
        tops.append(alts)
        llm.eval([tok])
    text = llm.detokenize(out).decode("utf-8", errors="replace")
    return {
        "event_id": f"{job.condition.name}-{job.index:05d}",
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": "SmolLM2-135M-Instruct", "model_version": job.condition.model_version,
        "prompt": job.prompt, "output": text, "segment": {"route": job.route},
        "token_logprobs": logprobs, "top_logprobs": tops, "finish_reason": finish,
        "output_tokens": len(out), "latency_ms": (time.perf_counter() - t0) * 1000.0,
        "metadata": {"condition": job.condition.name, "prompt_id": job.prompt_id},
    }


def _piece(llm: Any, tok: int) -> str:
    """A token's text as a top-logprobs key."""
    text: str = llm.detokenize([tok]).decode("utf-8", errors="replace")
    return text if text else f"<{tok}>"
