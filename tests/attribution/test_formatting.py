from __future__ import annotations

from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.formatting import collate, encode_example
from driftscope_llm.attribution.tinymodel import build_tokenizer

EX = Example("a", "what is two plus two ?", "two plus two is four .")


def _tok():
    return build_tokenizer([EX.prompt, EX.response, "user assistant hello :"])


def test_default_join_rule_masks_the_prompt() -> None:
    tok = _tok()
    enc = encode_example(tok, EX, max_length=64)
    ids = enc.input_ids
    assert ids[0] == tok.bos_token_id
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids[1 : enc.prompt_len]) == "what is two plus two ?"
    assert tok.decode(ids[enc.prompt_len : -1]) == "two plus two is four ."
    batch = collate(tok, [EX, Example("b", "hello", "hi")], max_length=64)
    assert batch.labels[0, : enc.prompt_len].eq(-100).all()
    assert batch.labels[0, enc.prompt_len : len(ids)].tolist() == ids[enc.prompt_len :]
    assert batch.labels[1].ne(-100).sum() == batch.response_mask[1].sum()
    assert int(batch.last_response[0]) == len(ids) - 1
    assert int(batch.last_prompt[0]) == enc.prompt_len - 1
    assert batch.attention_mask[1].sum() < batch.attention_mask[0].sum()


def test_chat_template_response_is_the_assistant_part() -> None:
    tok = _tok()
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} [EOS] {% endfor %}"
        "{% if add_generation_prompt %}assistant : {% endif %}"
    )
    enc = encode_example(tok, EX, max_length=64)
    prompt = tok.decode(enc.input_ids[: enc.prompt_len])
    response = tok.decode(enc.input_ids[enc.prompt_len :])
    assert prompt.endswith("assistant :")
    assert "what is two plus two" in prompt
    assert response.startswith("two plus two is four .")
    assert "user" not in response


def test_truncation_keeps_the_response() -> None:
    tok = _tok()
    long = Example("c", " ".join(["two"] * 50), "four .")
    enc = encode_example(tok, long, max_length=10)
    assert len(enc.input_ids) == 10
    assert tok.decode(enc.input_ids[enc.prompt_len :]).startswith("four .")
