"""The emitter on the real broker: a wrapped ``openai`` client's responses (plain and streamed)
reach the topic keyed by model, and the collector's decoder maps every record to its event."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaProducer
from openai import OpenAI

from driftscope_llm.services.ingest import RecordDecoder
from driftscope_llm.services.ingest.emitter import Emitter
from tests.collector_harness import consume_all
from tests.unit.test_emitter import api_url as _api_url  # the loopback API fixture

api_url = _api_url


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    yield p
    p.close()


def test_wrapped_client_responses_reach_kafka_and_decode(
    api_url: str, producer: KafkaProducer, kafka_bootstrap: str, new_topic: Callable[..., str],
) -> None:
    topic = new_topic(partitions=1)
    emitter = Emitter(producer, topic, segment={"route": "billing"})
    client = emitter.wrap(OpenAI(base_url=api_url, api_key="test"))
    for _ in range(5):
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "Refund?"}])
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[])
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "Refund issued."
    emitter.close()
    assert (emitter.sent, emitter.dropped, emitter.failed) == (6, 0, 0)

    records = consume_all(kafka_bootstrap, topic)
    assert len(records) == 6 and {r.key for r in records} == {b"gpt-4o-mini"}
    decoder = RecordDecoder()
    events = [ev for r in records for ev in decoder.decode(topic, r.value).events]
    assert [ev.output for ev in events] == ["Your refund is on its way."] * 5 + ["Refund issued."]
    assert all(ev.segment == {"route": "billing"} and ev.model == "gpt-4o-mini"
               for ev in events)
