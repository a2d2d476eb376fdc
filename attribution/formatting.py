"""Turn (prompt, response) pairs into token ids with a response mask.

Rule (docs/attribution.md, "Formatting"):

* the tokenizer has a chat template: the example is rendered as a user turn (``prompt``) followed
  by an assistant turn (``response``); the prompt part is the rendering of the user turn with the
  generation prompt, and the response tokens are everything after it (the assistant text and
  the template's end-of-turn tokens);
* otherwise the **default join rule**: ``tokens(prompt + "\\n")`` (with the tokenizer's own
  special tokens, e.g. BOS) followed by ``tokens(response)`` and the EOS token.

Prompt and response are tokenised separately and concatenated, so the boundary is exact.

**Length.** An example keeps at most ``min(max_length, tokenizer.model_max_length)`` tokens
(:func:`token_limit`); :class:`~driftscope_llm.attribution.modeling.LoadedModel` sets
``model_max_length`` to the model's maximum positions, so no input ever indexes past the position
embeddings. Over-long examples lose prompt tokens from the left first (the response is what is
attributed; the prompt's end, next to the response, is kept, and at least one prompt token
stays), then response tokens from the right.

``labels`` holds ``-100`` on prompt and padding positions so the loss covers the response only.
Batches are right-padded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
except ImportError as exc:  # pragma: no cover - needs the extra missing
    raise MissingExtraError("torch", "attribution") from exc

__all__ = [
    "EncodedBatch", "ExampleLike", "collate", "encode_example", "encode_examples", "token_limit",
]

IGNORE_INDEX = -100
#: transformers' ``model_max_length`` when a tokenizer does not know its model's limit (1e30).
_UNSET_LIMIT = 10**12


class ExampleLike(Protocol):
    """Anything with a prompt and a response (corpus examples, queries, production outputs)."""

    @property
    def prompt(self) -> str: ...

    @property
    def response(self) -> str: ...


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    prompt_len: int  # number of leading prompt tokens


def _split_texts(tokenizer: Any, example: ExampleLike) -> tuple[str, str, bool]:
    """(prompt part, response part, whether the prompt takes the tokenizer's special tokens)."""
    if not getattr(tokenizer, "chat_template", None):
        return example.prompt + "\n", example.response, True
    user = [{"role": "user", "content": example.prompt}]
    full_text = tokenizer.apply_chat_template(
        [*user, {"role": "assistant", "content": example.response}], tokenize=False
    )
    prompt_text = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    if not full_text.startswith(prompt_text):  # template rewrites the user turn: use a prefix
        n = 0
        while n < min(len(full_text), len(prompt_text)) and full_text[n] == prompt_text[n]:
            n += 1
        prompt_text = full_text[:n]
    return prompt_text, full_text[len(prompt_text) :], False


def token_limit(tokenizer: Any, max_length: int) -> int:
    """``max_length`` clamped to ``tokenizer.model_max_length`` when that is set (and >= 2)."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 2 <= limit < _UNSET_LIMIT:
        return min(max_length, limit)
    return max_length


def encode_examples(
    tokenizer: Any, examples: Sequence[ExampleLike], max_length: int
) -> list[Encoded]:
    """Token ids and prompt lengths of ``examples`` (module docstring), tokenised in batch."""
    max_length = token_limit(tokenizer, max_length)
    parts = [_split_texts(tokenizer, ex) for ex in examples]
    special = parts[0][2] if parts else True
    prompts = tokenizer([p for p, _, _ in parts], add_special_tokens=special)["input_ids"]
    responses = tokenizer([r for _, r, _ in parts], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    out = []
    for prompt_ids, response_ids in zip(prompts, responses, strict=True):
        prompt_ids, response_ids = [int(t) for t in prompt_ids], [int(t) for t in response_ids]
        if special and eos is not None:  # default join rule ends with EOS
            response_ids.append(int(eos))
        if not response_ids:
            response_ids = [int(eos or 0)]
        overflow = len(prompt_ids) + len(response_ids) - max_length
        if overflow > 0:
            cut = min(overflow, max(len(prompt_ids) - 1, 0))
            prompt_ids = prompt_ids[cut:]
            response_ids = response_ids[: max_length - len(prompt_ids)]
        out.append(Encoded(prompt_ids + response_ids, len(prompt_ids)))
    return out


def encode_example(tokenizer: Any, example: ExampleLike, max_length: int) -> Encoded:
    """Token ids of one example and the length of its prompt part (see module docstring)."""
    return encode_examples(tokenizer, [example], max_length)[0]


@dataclass
class EncodedBatch:
    """A right-padded batch. ``response_mask`` marks response tokens (the attributed part)."""

    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long
    labels: torch.Tensor  # (B, T) long, -100 outside the response
    response_mask: torch.Tensor  # (B, T) bool
    last_prompt: torch.Tensor  # (B,) index of the last prompt token
    last_response: torch.Tensor  # (B,) index of the last response token

    def to(self, device: torch.device) -> EncodedBatch:
        return EncodedBatch(
            *(t.to(device) for t in (
                self.input_ids, self.attention_mask, self.labels, self.response_mask,
                self.last_prompt, self.last_response,
            ))
        )


def collate(
    tokenizer: Any, examples: Sequence[ExampleLike], max_length: int
) -> EncodedBatch:
    """Encode and right-pad ``examples`` into one batch."""
    enc = encode_examples(tokenizer, examples, max_length)
    width = max(len(e.input_ids) for e in enc)
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    b = len(enc)
    input_ids = torch.full((b, width), int(pad), dtype=torch.long)
    attention = torch.zeros((b, width), dtype=torch.long)
    labels = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
    response = torch.zeros((b, width), dtype=torch.bool)
    last_prompt = torch.zeros(b, dtype=torch.long)
    last_response = torch.zeros(b, dtype=torch.long)
    for i, e in enumerate(enc):
        n = len(e.input_ids)
        ids = torch.tensor(e.input_ids, dtype=torch.long)
        input_ids[i, :n] = ids
        attention[i, :n] = 1
        labels[i, e.prompt_len : n] = ids[e.prompt_len :]
        response[i, e.prompt_len : n] = True
        last_prompt[i] = max(e.prompt_len - 1, 0)
        last_response[i] = n - 1
    return EncodedBatch(input_ids, attention, labels, response, last_prompt, last_response)
