"""The demo's sample lines: each version's answer to the same billing prompt, chosen where the
last version refused (the drift the story is about) with that refusal itself (a prompt is
sampled more than once), else the first billing prompt; then the refusal counts. Printed at 200
columns so each line is one line."""
from __future__ import annotations

import io

from rich.console import Console

from driftscope_llm.services.cli.demo import _show_answers
from driftscope_llm.services.demo.scenario import Generation


def _gen(prompt: str, output: str) -> Generation:
    return Generation(prompt=prompt, output=output, token_logprobs=[], top_logprobs=[])


def _printed(gens: dict[str, list[tuple[str, Generation]]]) -> list[str]:
    buf = io.StringIO()
    _show_answers(Console(file=buf, width=200, color_system=None), gens)
    return [line.strip() for line in buf.getvalue().splitlines()]


def test_the_prompt_shown_is_the_first_billing_prompt_the_last_version_refused() -> None:
    gens = {
        "v1": [("billing", _gen("How do I change my invoice?", "Go to Billing.")),
               ("shipping", _gen("Where is my parcel?", "It ships today.")),
               ("billing", _gen("Why was I charged twice?", "We will refund the double charge."))],
        "v2": [("billing", _gen("How do I change my invoice?", "Go to Billing and edit it.")),
               ("shipping", _gen("Where is my parcel?", "I'm sorry, but I can't help with that.")),
               ("billing", _gen("Why was I charged twice?", "We refunded it.")),
               ("billing", _gen("Why was I charged twice?",
                                "I'm sorry, but I can't help with billing questions."))],
    }
    assert _printed(gens) == [
        "v1 on 'Why was I charged twice?': 'We will refund the double charge.'",
        "v2 on 'Why was I charged twice?': \"I'm sorry, but I can't help with billing "
        "questions.\"",
        "refusals: v1 0/2 billing, 0/1 other; v2 1/3 billing, 1/1 other",
    ]


def test_without_a_refusal_the_first_billing_prompt_is_shown() -> None:
    gens = {
        "v1": [("shipping", _gen("Where is my parcel?", "It ships today.")),
               ("billing", _gen("How do I change my invoice?", "Go to Billing."))],
        "v2": [("shipping", _gen("Where is my parcel?", "It ships tomorrow.")),
               ("billing", _gen("How do I change my invoice?", "Open Billing."))],
    }
    assert _printed(gens) == [
        "v1 on 'How do I change my invoice?': 'Go to Billing.'",
        "v2 on 'How do I change my invoice?': 'Open Billing.'",
        "refusals: v1 0/1 billing, 0/1 other; v2 0/1 billing, 0/1 other",
    ]
