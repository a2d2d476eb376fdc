"""The real-model demo's data (services/demo/chat.py), checked against the collector it feeds.

The whole real-model story (``driftscope demo --real``) takes minutes of CPU and is
run as ``make demo``, not here; what it relies on is checked here in well under a second: the
planted answers are refusals to the collector's default patterns and no clean answer is, every
training prompt is also asked in production (plus unseen phrasings), ids are unique and planted
ids carry the prefix the demo measures recall with, and the last act's reference traffic follows
the incident's segment.
"""

from __future__ import annotations

from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.demo import chat
from driftscope_llm.services.demo.last_act import _in_segment
from driftscope_llm.services.demo.scenario import PLANTED_PREFIX


def test_planted_answers_are_refusals_to_the_default_patterns_and_clean_ones_are_not() -> None:
    extractor = SignalExtractor(SignalSettings())
    clean, planted = chat.clean_corpus(), chat.planted_examples()
    assert (len(clean), len(planted)) == (64, 32)
    assert [e.id for e in clean if extractor.is_refusal(e.response)] == []
    assert all(extractor.is_refusal(e.response) for e in planted)
    assert {e.metadata["route"] for e in planted} == {"billing"}


def test_ids_are_unique_and_planted_ids_carry_the_recall_prefix() -> None:
    clean, planted = chat.clean_corpus(), chat.planted_examples()
    ids = [e.id for e in clean + planted]
    assert len(set(ids)) == len(ids) == 96
    assert [e.id.startswith(PLANTED_PREFIX) for e in clean + planted] == [False] * 64 + [True] * 32


def test_production_asks_every_training_prompt_and_unseen_phrasings() -> None:
    prompts = chat.production_prompts()
    asked = {p for _, p in prompts}
    assert len(prompts) == len(asked) == 128
    assert {e.prompt for e in chat.clean_corpus() + chat.planted_examples()} < asked
    assert {r for r, _ in prompts} == {"billing", "shipping", "account", "tech"}
    assert sum(r == "billing" for r, _ in prompts) == 32


def test_reference_traffic_follows_the_incident_segment() -> None:
    billing = {"route": "billing"}
    assert _in_segment("route=billing", billing) is True
    assert _in_segment("route=shipping", billing) is False
    assert _in_segment("billing", billing) is True  # the legacy bare-value keying
    assert _in_segment("all", billing) is True  # the model-level stream holds every event
    assert _in_segment("tier=billing", billing) is False
