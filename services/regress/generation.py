"""Where the gate's outputs come from: a local Hugging Face model or an OpenAI-compatible endpoint.

Both sides of a comparison are a :class:`Generator`; each is chosen independently from its
command-line spec by :func:`open_generator`:

* a **directory** with a ``config.json`` — a Hugging Face causal LM, optionally with a PEFT (LoRA)
  adapter directory (:class:`LocalGenerator`); or a **GGUF file**, converted once to a cached
  Hugging Face directory (:mod:`driftscope_llm.attribution.model_cache`) and run the same way.
  Prompts are rendered as the attribution library renders training examples
  (docs/attribution.md, "Formatting"): the tokenizer's chat template with the generation prompt
  when it has one, else ``prompt + "\\n"``. Rows of every prompt length are batched together
  (:data:`BATCH_ROWS`, left-padded). Sampling is ancestral at ``temperature`` with a
  ``torch.Generator`` seeded per call, on one CPU thread for tiny models (torch's default threads
  for real ones, or the GPU), so a run is reproducible; each sampled token's natural-log
  probability and the top-5 alternatives are recorded from the same softmax that was sampled.
* an **http(s) URL** — an OpenAI-compatible server's base URL (``http://127.0.0.1:8080/v1``);
  a ``#name`` fragment sets the request's ``model`` field (:class:`EndpointGenerator`). Every
  sample is one ``POST {base}/chat/completions`` with ``logprobs: true, top_logprobs: 5``,
  ``temperature``, ``max_tokens`` and a per-sample ``seed``. A server that answers without token
  logprobs is refused (:class:`~driftscope_llm.services.regress.errors.EndpointError`): the
  logprob signals are half of what the gate compares.

Generations with no tokens (the model ended at once) are kept: an empty answer is behaviour too.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urldefrag

from driftscope_llm.attribution.model_cache import is_gguf
from driftscope_llm.services.regress.errors import EndpointError, ModelSpecError

__all__ = [
    "EndpointGenerator",
    "GenerationSettings",
    "Generator",
    "LocalGenerator",
    "Sample",
    "open_generator",
]

TOP_K = 5
TINY_PARAMETERS = 20_000_000
BATCH_ROWS = 64
"""Rows (prompt × sample) sampled together: prompts of every length share a batch, left-padded
(:mod:`driftscope_llm.attribution.sampling`); on a CPU a decoding step of 64 rows costs a few
times one of a single row, and the KV cache of 64 rows of a 135M model is a few MB."""


@dataclass(frozen=True)
class GenerationSettings:
    """How each side samples: ``samples`` outputs per probe at ``temperature``, at most
    ``max_new_tokens`` tokens each; ``seed`` seeds the side's sampler."""

    samples: int = 4
    max_new_tokens: int = 48
    temperature: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Sample:
    """One generated output with its token logprobs (natural log) and top-k alternatives."""

    prompt: str
    output: str
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    finish_reason: str


Progress = Callable[[int], None]


class Generator(Protocol):
    """Samples ``settings.samples`` outputs for each prompt, in prompt order (all samples of the
    first prompt, then the second, ...). ``describe`` names the model for reports."""

    @property
    def describe(self) -> str: ...

    def generate(self, prompts: Sequence[str], settings: GenerationSettings, *,
                 on_prompt: Progress | None = None) -> list[list[Sample]]: ...


def open_generator(spec: str, adapter: Path | None = None, *,
                   timeout_s: float = 120.0) -> Generator:
    """A :class:`Generator` for a model directory or an endpoint URL (module docstring)."""
    if spec.startswith(("http://", "https://")):
        if adapter is not None:
            raise ModelSpecError("an adapter applies to a local model directory, not an "
                                 "endpoint", spec=spec)
        return EndpointGenerator(spec, timeout_s=timeout_s)
    path = Path(spec)
    if not ((path / "config.json").is_file() or is_gguf(path)):
        raise ModelSpecError(
            f"{spec!r} is neither a Hugging Face model directory (no config.json there), a GGUF "
            "file nor an http(s):// endpoint URL", spec=spec)
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        raise ModelSpecError(f"{adapter} is not a PEFT adapter directory (no "
                             "adapter_config.json)", spec=str(adapter))
    return LocalGenerator(path, adapter)


class LocalGenerator:
    """A Hugging Face causal LM directory (and optional PEFT adapter), loaded on first use."""

    def __init__(self, model_dir: Path, adapter_dir: Path | None = None, *,
                 device: str | None = None) -> None:
        self.model_dir = model_dir
        self.adapter_dir = adapter_dir
        self.device = device
        self._loaded: Any = None

    @property
    def describe(self) -> str:
        base = str(self.model_dir)
        return base if self.adapter_dir is None else f"{base} + {self.adapter_dir}"

    def _load(self) -> Any:
        if self._loaded is None:
            from driftscope_llm.attribution.modeling import load_model

            self._loaded = load_model(self.model_dir, self.adapter_dir, device=self.device)
        return self._loaded

    def generate(self, prompts: Sequence[str], settings: GenerationSettings, *,
                 on_prompt: Progress | None = None) -> list[list[Sample]]:
        import torch

        from driftscope_llm.attribution.tinymodel import cpu_threads

        lm = self._load()
        tok = lm.tokenizer
        vocab: list[str] = list(tok.convert_ids_to_tokens(list(range(len(tok)))))
        gen = torch.Generator(device=lm.device).manual_seed(settings.seed)
        ids = [prompt_ids(tok, p) for p in prompts]
        rows = sorted(((i, ids[i]) for i in range(len(prompts)) for _ in range(settings.samples)),
                      key=lambda r: len(r[1]))
        out: list[list[Sample]] = [[] for _ in prompts]
        threads = 1 if lm.device.type == "cpu" and _is_tiny(lm.model) else None
        with cpu_threads(threads), torch.no_grad():
            for start in range(0, len(rows), BATCH_ROWS):
                batch = rows[start:start + BATCH_ROWS]
                for (i, _), sample in zip(batch, _sample_rows(lm, vocab, batch, prompts,
                                                              settings, gen), strict=True):
                    out[i].append(sample)
                if on_prompt is not None:
                    on_prompt(sum(len(out[i]) == settings.samples
                                  for i in dict.fromkeys(i for i, _ in batch)))
        return out


def _is_tiny(model: Any) -> bool:
    """Under :data:`TINY_PARAMETERS` parameters: one CPU thread is fastest (matmuls too small to
    split); a real model (SmolLM2-135M) samples faster on torch's default threads."""
    return int(sum(p.numel() for p in model.parameters())) < TINY_PARAMETERS


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of the generation prefix for ``prompt`` (chat template, else ``prompt + "\\n"``
    with the tokenizer's special tokens) — the rule training examples were formatted with."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             tokenize=False, add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False).input_ids)
    return list(tokenizer(prompt + "\n").input_ids)


def _sample_rows(lm: Any, vocab: list[str], rows: list[tuple[int, list[int]]],
                 prompts: Sequence[str], settings: GenerationSettings, gen: Any) -> list[Sample]:
    """Sample every row (equal-length prompts) together with a KV cache."""
    from driftscope_llm.attribution.sampling import sample_rows

    sampled = sample_rows(lm.model, [r[1] for r in rows], eos=lm.tokenizer.eos_token_id,
                          vocab=vocab, max_new_tokens=settings.max_new_tokens, gen=gen,
                          temperature=settings.temperature, top_k=TOP_K, device=lm.device)
    return [Sample(prompts[i], lm.tokenizer.decode(s.tokens, skip_special_tokens=True),
                   s.logprobs, s.top_logprobs, "stop" if s.stopped else "length")
            for s, (i, _) in zip(sampled, rows, strict=True)]


class EndpointGenerator:
    """An OpenAI-compatible server (``/v1/chat/completions`` with logprobs); stdlib HTTP only."""

    def __init__(self, url: str, *, timeout_s: float = 120.0) -> None:
        base, fragment = urldefrag(url)
        self.base = base.rstrip("/")
        self.model = fragment or "default"
        self.timeout_s = timeout_s

    @property
    def describe(self) -> str:
        return f"{self.base} (model {self.model})"

    def generate(self, prompts: Sequence[str], settings: GenerationSettings, *,
                 on_prompt: Progress | None = None) -> list[list[Sample]]:
        out: list[list[Sample]] = []
        for i, prompt in enumerate(prompts):
            out.append([self._one(prompt, settings, settings.seed * 1_000_003 + i * 101 + s)
                        for s in range(settings.samples)])
            if on_prompt is not None:
                on_prompt(1)
        return out

    def _one(self, prompt: str, settings: GenerationSettings, seed: int) -> Sample:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                "temperature": settings.temperature, "max_tokens": settings.max_new_tokens,
                "seed": seed, "logprobs": True, "top_logprobs": TOP_K, "stream": False}
        data = self._post("/chat/completions", body)
        return parse_chat_completion(data, prompt, url=self.base)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        url = self.base + path
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise EndpointError(f"{url} answered HTTP {exc.code}: {detail}", url=url,
                                status=exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise EndpointError(f"cannot reach {url}: {exc}", url=url) from exc
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EndpointError(f"{url} did not answer JSON", url=url) from exc


def parse_chat_completion(data: Any, prompt: str, *, url: str) -> Sample:
    """A :class:`Sample` from an OpenAI chat-completion response body (first choice)."""
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        content = (choice.get("logprobs") or {}).get("content")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise EndpointError(f"{url}: not a chat-completion response ({exc!r})", url=url) from exc
    if content is None:
        raise EndpointError(f"{url} returned no token logprobs; the gate needs a server that "
                            "honours 'logprobs': true", url=url)
    lps = [float(t["logprob"]) for t in content]
    tops = [{str(a["token"]): float(a["logprob"]) for a in t.get("top_logprobs") or []}
            for t in content]
    return Sample(prompt, text, lps, tops, str(choice.get("finish_reason") or "stop"))
