"""OpenAI-format chat completions (OpenAI, vLLM, SGLang, llama.cpp, most gateways) → OutputEvents.

A record is either the response object itself (``{"id", "object": "chat.completion", "created",
"model", "choices": [...]}``) or a *wrapped* record that adds what the response does not know::

    {"response": {...chat completion...},            # or "chunks": [...streamed chunks...]
     "request": {"model": "...", "messages": [...]},  # optional: the prompt, the asked model
     "segment": {"route": "billing"},                 # optional caller labels
     "model_version": "ft-2026-05",                   # optional, else response.model
     "latency_ms": 812.0, "event_id": "...", "ts": "...", "metadata": {...}}

Each choice becomes one event; the mapping rules are listed in ``docs/ingestion.md``. Legacy
text completions (``choices[].text``, ``logprobs.token_logprobs``) are read too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from driftscope_llm.services.errors import InvalidEventError
from driftscope_llm.services.ingest.results import Decoded, Reject, finite_float, validate_event

__all__ = ["assemble_stream", "events_from_openai", "is_openai_record", "logprobs_from_content"]


def is_openai_record(data: Mapping[str, Any]) -> bool:
    """A bare chat completion, or a wrapper holding ``response`` or ``chunks``."""
    if isinstance(data.get("choices"), list):
        return True
    response = data.get("response")
    return (isinstance(response, Mapping) and "choices" in response) or isinstance(
        data.get("chunks"), list)


def events_from_openai(data: Mapping[str, Any]) -> Decoded:
    """Map one OpenAI-format record (bare or wrapped) to one event per choice."""
    out = Decoded(format="openai")
    wrapper: Mapping[str, Any] = {} if isinstance(data.get("choices"), list) else data
    try:
        response = _response_of(data)
    except InvalidEventError as exc:
        out.rejects.append(Reject(exc.reason, exc.detail))
        return out
    request = wrapper.get("request")
    request = request if isinstance(request, Mapping) else {}
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        out.rejects.append(Reject("missing_field", "response.choices is empty or missing"))
        return out
    common = _common_fields(response, request, wrapper)
    many = len(choices) > 1
    for pos, choice in enumerate(choices):
        item = f"choice {choice.get('index', pos) if isinstance(choice, Mapping) else pos}"
        try:
            fields = _choice_fields(choice, common, many=many)
            out.events.append(validate_event(fields))
        except InvalidEventError as exc:
            out.rejects.append(Reject(exc.reason, exc.detail, item))
    return out


def _response_of(data: Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(data.get("choices"), list):
        return data
    if isinstance(data.get("chunks"), list):
        return assemble_stream(data["chunks"])
    response = data.get("response")
    if not isinstance(response, Mapping):
        raise InvalidEventError("missing_field", "response (a chat completion object) is "
                                                 "required in a wrapped OpenAI record")
    return response


def _common_fields(response: Mapping[str, Any], request: Mapping[str, Any],
                   wrapper: Mapping[str, Any]) -> dict[str, Any]:
    response_model = response.get("model")
    model = request.get("model") or response_model
    ts = wrapper.get("ts")
    if ts is None and isinstance(response.get("created"), int | float):
        ts = datetime.fromtimestamp(float(response["created"]), UTC)
    metadata: dict[str, Any] = {"source": "openai"}
    for key in ("id", "system_fingerprint", "usage", "service_tier"):
        if response.get(key) is not None:
            metadata["response_id" if key == "id" else key] = response[key]
    if isinstance(wrapper.get("metadata"), Mapping):
        metadata.update(wrapper["metadata"])
    fields: dict[str, Any] = {
        "event_id": wrapper.get("event_id") or response.get("id"),
        "ts": ts,
        "model": model,
        "model_version": wrapper.get("model_version") or response_model or "unversioned",
        "prompt": _prompt_of(request),
        "segment": wrapper.get("segment") or {},
        "latency_ms": wrapper.get("latency_ms"),
        "metadata": metadata,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _choice_fields(choice: Any, common: Mapping[str, Any], *, many: bool) -> dict[str, Any]:
    if not isinstance(choice, Mapping):
        raise InvalidEventError("wrong_type", "a choice must be an object")
    fields = dict(common)
    if many and "event_id" in fields:
        fields["event_id"] = f"{fields['event_id']}:{choice.get('index', 0)}"
    message = choice.get("message")
    if isinstance(message, Mapping):
        text = _text_of(message.get("content"))
        if text is None and isinstance(message.get("refusal"), str):
            text = message["refusal"]  # a refusal is the output the refusal signal watches
        if text is None:
            raise InvalidEventError("no_output", "the message has no text content (tool calls "
                                                 "only, or content null)")
    elif isinstance(choice.get("text"), str):
        text = choice["text"]
    else:
        raise InvalidEventError("missing_field", "choice.message.content is required")
    fields["output"] = text
    if isinstance(choice.get("finish_reason"), str):
        fields["finish_reason"] = choice["finish_reason"]
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, Mapping):
        tokens, top = _logprobs_of(logprobs)
        if tokens:
            fields["token_logprobs"] = tokens
        if top:
            fields["top_logprobs"] = top
    return fields


def _logprobs_of(logprobs: Mapping[str, Any]) -> tuple[list[float], list[dict[str, float]]]:
    content = logprobs.get("content")
    if isinstance(content, list):
        return logprobs_from_content(content)
    legacy = logprobs.get("token_logprobs")  # text completions
    if isinstance(legacy, list):
        values = [float(v) for v in legacy if isinstance(v, int | float)]
        top_legacy = logprobs.get("top_logprobs")
        top = ([{str(k): float(v) for k, v in alts.items()} for alts in top_legacy
                if isinstance(alts, Mapping)] if isinstance(top_legacy, list) else [])
        return values, top
    return [], []


def logprobs_from_content(content: Iterable[Any]) -> tuple[list[float], list[dict[str, float]]]:
    """Token logprobs and top alternatives from OpenAI ``logprobs.content`` items
    (``{token, logprob, top_logprobs: [{token, logprob}]}``). Also accepts bare numbers."""
    tokens: list[float] = []
    top: list[dict[str, float]] = []
    for item in content:
        if isinstance(item, int | float) and not isinstance(item, bool):
            tokens.append(float(item))
            continue
        if not isinstance(item, Mapping):
            raise InvalidEventError("wrong_type", "a logprobs.content item must be an object")
        value = finite_float(item.get("logprob"))
        if value is None:
            raise InvalidEventError("wrong_type", "logprobs.content[].logprob must be a finite "
                                                  "number")
        tokens.append(value)
        alts = item.get("top_logprobs")
        if isinstance(alts, list) and alts:
            top.append({str(a.get("token")): float(a["logprob"]) for a in alts
                        if isinstance(a, Mapping) and finite_float(a.get("logprob")) is not None})
    return tokens, (top if len(top) == len(tokens) else [])


def _text_of(content: Any) -> str | None:
    """Message content as text: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [str(p["text"]) for p in content
                 if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
        return "".join(texts) if texts else None
    return None


def _prompt_of(request: Mapping[str, Any]) -> str | None:
    """The last user message of the request (what the output answers), or its ``prompt``."""
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, Mapping) and message.get("role") == "user":
                return _text_of(message.get("content"))
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else None


def assemble_stream(chunks: Iterable[Any]) -> dict[str, Any]:
    """One ``chat.completion`` dict from streamed ``chat.completion.chunk`` objects or dicts.

    Per choice index, ``delta.content`` (and ``delta.refusal``) and ``logprobs.content`` are
    concatenated in arrival order; the last non-null ``finish_reason`` wins; ``usage`` comes
    from the chunk that carries it (``stream_options={"include_usage": True}``).
    """
    response: dict[str, Any] = {"object": "chat.completion", "choices": []}
    by_index: dict[int, dict[str, Any]] = {}
    for raw in chunks:
        chunk = as_mapping(raw)
        for key in ("id", "created", "model", "system_fingerprint", "usage"):
            if chunk.get(key) is not None:
                response[key] = chunk[key]
        for delta_choice in chunk.get("choices") or []:
            _merge_choice(by_index, delta_choice)
    response["choices"] = [by_index[i] for i in sorted(by_index)]
    return response


def _merge_choice(by_index: dict[int, dict[str, Any]], delta_choice: Mapping[str, Any]) -> None:
    index = int(delta_choice.get("index") or 0)
    choice = by_index.setdefault(index, {"index": index, "finish_reason": None,
                                         "message": {"role": "assistant", "content": None}})
    delta = delta_choice.get("delta") or {}
    message = choice["message"]
    for key in ("content", "refusal"):
        piece = delta.get(key)
        if isinstance(piece, str):
            message[key] = (message.get(key) or "") + piece
    if delta_choice.get("finish_reason") is not None:
        choice["finish_reason"] = delta_choice["finish_reason"]
    logprobs = delta_choice.get("logprobs")
    if isinstance(logprobs, Mapping) and isinstance(logprobs.get("content"), list):
        choice.setdefault("logprobs", {"content": []})["content"].extend(logprobs["content"])


def as_mapping(obj: Any) -> Mapping[str, Any]:
    """A plain mapping from a dict or any pydantic-style object (``model_dump()``), such as the
    ``openai`` package's response types — duck typed, so ``openai`` need not be installed."""
    if isinstance(obj, Mapping):
        return obj
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        data = dump(mode="json", exclude_unset=False)
        if isinstance(data, Mapping):
            return data
    raise InvalidEventError("wrong_type", f"expected a mapping or a pydantic model, got "
                                          f"{type(obj).__name__}")
