"""The collector with its embedder ON, against the real broker and Redis.

Every other integration test runs the collector with the embedder off; this one exports the
real all-MiniLM-L6-v2 (``export_embedder``, int8 as the collector's default export) and runs
``driftscope collector`` as a subprocess that embeds every event. The stream: four routes of
support answers, then billing's answers switch to another topic (crypto pitches) at event
:data:`SHIFT_AT`, with nothing else changed (same refusal rate, lengths and logprobs). The
embedding signal must be what catches it: an incident whose facets include the embedding signal
on billing's stream, no facet on another route, no anomaly on any event before the shift, and
billing's embedding exemplars are the new topic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from driftscope_llm.services.collector.embedder import export_embedder
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from tests.collector_harness import (
    SMALL_WINDOWS,
    CollectorProcess,
    checkpoint_totals,
    consume_all,
    incidents,
    produce,
)

SHIFT_AT = 2000
NOVEL_WORDS = ("coin", "NFT", "blockchain", "token", "ether")
CONFIG = {**SMALL_WINDOWS, "drift": {**SMALL_WINDOWS["drift"], "cooldown_events": 400}}


@pytest.fixture(scope="module")
def embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_embedder(tmp_path_factory.mktemp("embedder"), quantize=True)


def test_topic_shift_is_caught_by_the_embedding_signal_in_the_collector(
    kafka_bootstrap: str, new_topic: Callable[..., str], redis_url: str,
    redis_client: redis.Redis, tmp_path: Path, embedder_dir: Path,
) -> None:
    events = list(generate_events(StreamSpec(
        n=2800, seed=3, drifts=(Drift(start=SHIFT_AT, route="billing", topic="crypto"),))))
    index = {e["event_id"]: i for i, e in enumerate(events)}
    output = {e["event_id"]: e["output"] for e in events}
    topic = new_topic(partitions=1)
    n = produce(kafka_bootstrap, topic, events)

    c = CollectorProcess(kafka_bootstrap, redis_url, topic, tmp_path, config=CONFIG,
                         group_id="g-embed", embedder_dir=embedder_dir)
    c.start(max_idle=8)
    assert c.wait_exit(timeout=400) == 0, c.log_text()
    assert checkpoint_totals(redis_client, topic) == n

    raised = [json.loads(m.value) for m in consume_all(kafka_bootstrap, f"{topic}.anomalies")]
    seen = sorted({(a["segment"], a["signal"], a["detector"]) for a in raised})
    # nothing before the shift: the embedding reference of a stationary stream raises nothing
    assert raised and min(index[a["event_id"]] for a in raised) >= SHIFT_AT, seen
    embedding = [a for a in raised if a["signal"] == "embedding"]
    # billing's embedding stream raises, by the projection and the cluster-share tests (measured:
    # both, and on the model-level stream embedding_novelty too)
    assert {a["detector"] for a in embedding if a["segment"] == "billing"} >= {
        "embedding_projection", "embedding_clusters"}, seen
    # only billing changed, and only what its text is: no refusal or logprob facet anywhere,
    # no facet on another route's stream
    assert {a["segment"] for a in raised} <= {"billing", "all"}, seen
    assert {a["signal"] for a in raised} <= {"embedding", "length_chars", "length_tokens"}, seen

    [incident] = incidents(redis_client)  # one change, one incident
    facets = {(f["segment"], f["signal"]) for f in incident["facets"]}
    assert ("billing", "embedding") in facets, facets
    texts = [output[e] for a in embedding if a["segment"] == "billing"
             for e in a["exemplars"]]
    novel = sum(any(w in t for w in NOVEL_WORDS) for t in texts)
    assert texts and novel >= 0.8 * len(texts), texts  # the exemplars are the new topic
