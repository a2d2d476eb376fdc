"""OpenAI-format records → OutputEvents, built from the ``openai`` package's own types.

One test per mapping rule of docs/ingestion.md ("OpenAI records").
"""

from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from driftscope_llm.services.ingest import RecordDecoder, assemble_stream, events_from_openai

CREATED = 1_780_000_000


def completion(content: str | None = "Your refund is on its way.", *, logprobs: bool = True,
               n: int = 1, refusal: str | None = None, tool_calls: bool = False,
               finish: str = "stop") -> ChatCompletion:
    tokens = [("Your", -0.01), (" refund", -0.2), (" is", -0.05)]
    choices = []
    for i in range(n):
        message: dict = {"role": "assistant", "content": content, "refusal": refusal}
        if tool_calls:
            message["tool_calls"] = [{"id": "call_1", "type": "function",
                                      "function": {"name": "lookup", "arguments": "{}"}}]
        choice: dict = {"index": i, "finish_reason": finish, "message": message,
                        "logprobs": None}
        if logprobs:
            choice["logprobs"] = {"content": [
                {"token": t, "logprob": lp, "bytes": list(t.encode()),
                 "top_logprobs": [{"token": t, "logprob": lp, "bytes": None},
                                  {"token": "x", "logprob": -4.0, "bytes": None}]}
                for t, lp in tokens], "refusal": None}
        choices.append(choice)
    return ChatCompletion.model_validate({
        "id": "chatcmpl-abc", "object": "chat.completion", "created": CREATED,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_1",
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        "choices": choices})


def dump(obj: ChatCompletion) -> dict:
    return obj.model_dump(mode="json")


def test_bare_response_maps_content_finish_reason_logprobs_and_time() -> None:
    out = events_from_openai(dump(completion()))
    assert not out.rejects
    [ev] = out.events
    assert ev.event_id == "chatcmpl-abc"
    assert ev.ts.timestamp() == CREATED
    assert ev.model == "gpt-4o-mini-2024-07-18"  # no request: the response's model
    assert ev.model_version == "gpt-4o-mini-2024-07-18"
    assert ev.output == "Your refund is on its way."
    assert ev.finish_reason == "stop"
    assert ev.token_logprobs == [-0.01, -0.2, -0.05]
    assert ev.top_logprobs is not None and ev.top_logprobs[1] == {" refund": -0.2, "x": -4.0}
    assert ev.metadata is not None and ev.metadata["usage"]["completion_tokens"] == 3
    assert ev.metadata["response_id"] == "chatcmpl-abc" and ev.metadata["source"] == "openai"


def test_wrapper_supplies_request_model_prompt_labels_version_and_latency() -> None:
    record = {"response": dump(completion()),
              "request": {"model": "gpt-4o-mini", "messages": [
                  {"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Where is my refund?"},
                  {"role": "assistant", "content": "Checking."},
                  {"role": "user", "content": [{"type": "text", "text": "Any news?"}]}]},
              "segment": {"route": "billing"}, "model_version": "ft-2026-05",
              "latency_ms": 812.5, "metadata": {"tenant": "acme"}}
    [ev] = events_from_openai(record).events
    assert ev.model == "gpt-4o-mini"  # the requested model names the stream
    assert ev.model_version == "ft-2026-05"
    assert ev.prompt == "Any news?"  # the last user turn, text parts joined
    assert ev.segment == {"route": "billing"}
    assert ev.latency_ms == 812.5
    assert ev.metadata is not None and ev.metadata["tenant"] == "acme"


def test_without_wrapper_version_the_response_model_is_the_version() -> None:
    record = {"response": dump(completion()), "request": {"model": "gpt-4o-mini"}}
    [ev] = events_from_openai(record).events
    assert (ev.model, ev.model_version) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")


def test_each_choice_is_one_event_with_its_index_in_the_id() -> None:
    out = events_from_openai(dump(completion(n=3)))
    assert [e.event_id for e in out.events] == ["chatcmpl-abc:0", "chatcmpl-abc:1",
                                                "chatcmpl-abc:2"]


def test_a_refusal_message_is_the_output() -> None:
    [ev] = events_from_openai(dump(completion(None, refusal="I can't help with that."))).events
    assert ev.output == "I can't help with that."


def test_tool_calls_only_is_rejected_with_a_reason_naming_the_choice() -> None:
    out = events_from_openai(dump(completion(None, tool_calls=True, finish="tool_calls")))
    assert not out.events
    [reject] = out.rejects
    assert reject.reason == "no_output" and reject.item == "choice 0"


def test_missing_logprobs_leave_the_signal_unmeasured() -> None:
    [ev] = events_from_openai(dump(completion(logprobs=False))).events
    assert ev.token_logprobs is None and ev.top_logprobs is None


def test_positive_logprob_is_rejected_not_clipped() -> None:
    data = dump(completion())
    data["choices"][0]["logprobs"]["content"][0]["logprob"] = 0.5
    out = events_from_openai(data)
    assert [r.reason for r in out.rejects] == ["invalid_value"]


def test_legacy_text_completion() -> None:
    data = {"id": "cmpl-1", "object": "text_completion", "created": CREATED, "model": "davinci",
            "choices": [{"index": 0, "text": "Hello", "finish_reason": "length",
                         "logprobs": {"tokens": ["Hel", "lo"], "token_logprobs": [-0.1, -0.3],
                                      "top_logprobs": [{"Hel": -0.1}, {"lo": -0.3}]}}]}
    [ev] = events_from_openai(data).events
    assert (ev.output, ev.finish_reason, ev.token_logprobs) == ("Hello", "length", [-0.1, -0.3])


def test_wrapper_without_response_is_rejected() -> None:
    out = events_from_openai({"chunks": "nope", "request": {}})
    assert out.rejects and out.rejects[0].reason in {"missing_field", "wrong_type"}


def streamed_chunks() -> list[ChatCompletionChunk]:
    pieces = [("Your", -0.01), (" refund", -0.2), (" is", -0.05), (" late.", -1.5)]
    chunks = [ChatCompletionChunk.model_validate({
        "id": "chatcmpl-s", "object": "chat.completion.chunk", "created": CREATED,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                     "finish_reason": None, "logprobs": None}]})]
    for text, lp in pieces:
        chunks.append(ChatCompletionChunk.model_validate({
            "id": "chatcmpl-s", "object": "chat.completion.chunk", "created": CREATED,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None,
                         "logprobs": {"content": [{"token": text, "logprob": lp, "bytes": None,
                                                   "top_logprobs": []}]}}]}))
    chunks.append(ChatCompletionChunk.model_validate({
        "id": "chatcmpl-s", "object": "chat.completion.chunk", "created": CREATED,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}]}))
    chunks.append(ChatCompletionChunk.model_validate({
        "id": "chatcmpl-s", "object": "chat.completion.chunk", "created": CREATED,
        "model": "gpt-4o-mini-2024-07-18", "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}))
    return chunks


def test_streamed_response_assembled_from_chunks_equals_the_whole() -> None:
    chunks = streamed_chunks()
    whole = assemble_stream(chunks)
    assert whole["choices"][0]["message"]["content"] == "Your refund is late."
    assert whole["usage"]["completion_tokens"] == 4
    [ev] = events_from_openai(whole).events
    assert ev.output == "Your refund is late."
    assert ev.finish_reason == "stop"
    assert ev.token_logprobs == [-0.01, -0.2, -0.05, -1.5]
    # a wrapped record of the raw chunks (what the emitter sends for streams) maps the same
    record = {"chunks": [c.model_dump(mode="json") for c in chunks],
              "request": {"model": "gpt-4o-mini"}}
    [again] = events_from_openai(record).events
    assert (again.output, again.token_logprobs) == (ev.output, ev.token_logprobs)
    assert again.model == "gpt-4o-mini"


@pytest.mark.parametrize("fmt", ["auto", "openai"])
def test_decoder_reads_openai_records_from_bytes(fmt: str) -> None:
    raw = json.dumps({"response": dump(completion()), "segment": {"route": "tech"}}).encode()
    out = RecordDecoder().decode_as(fmt, raw)  # type: ignore[arg-type]
    assert out.format == "openai" and len(out.events) == 1
    assert out.events[0].segment == {"route": "tech"}
