"""The embedding signal end to end: ONNX export, encoding, and a topic shift caught."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from driftscope_llm.services.collector.embedder import OnnxEmbedder, export_embedder
from driftscope_llm.services.collector.pipeline import PartitionState, Pipeline
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.config import SegmentSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.schemas import OutputEvent
from driftscope_llm.services.store import MemoryStore


@pytest.fixture(scope="module")
def embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_embedder(tmp_path_factory.mktemp("embedder"), quantize=True)


def test_export_is_faithful_and_normalised(embedder_dir: Path) -> None:
    fp32 = OnnxEmbedder(embedder_dir)
    int8 = OnnxEmbedder(embedder_dir, quantized=True)
    texts = ["How do I reset my password?", "I'm sorry, but I can't help with that.",
             "Bitcoin prices swung overnight", "short", "x " * 400]
    a, b = fp32.encode(texts), int8.encode(texts)
    assert a.shape == (5, 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.85  # int8 stays close to fp32 (0.90-0.97)
    # padding does not change a text's embedding: encoded alone or in a batch, the same
    np.testing.assert_allclose(fp32.encode(texts[3:4])[0], a[3], atol=1e-5)
    # meaning: the refusal is nearer another refusal than a crypto pitch
    r = fp32.encode(["I am sorry, I cannot assist with billing questions."])[0]
    assert r @ a[1] > r @ a[2]


def test_topic_shift_in_one_route_raises_an_embedding_anomaly(embedder_dir: Path) -> None:
    settings = DriftSettings(reference_size=400, min_reference_values=100, window_size=200,
                             min_window=50, test_every=25, cooldown_events=400)
    pipeline = Pipeline(settings, SignalExtractor(SignalSettings()),
                        SegmentSettings(label="route", allowed=["billing", "shipping", "account",
                                                                "tech"]),
                        MemoryStore(), embedder=OnnxEmbedder(embedder_dir),
                        embed_sampling_rate=1.0)
    spec = StreamSpec(n=2800, seed=3,
                      drifts=(Drift(start=2000, route="billing", topic="crypto"),))
    events = [(i, OutputEvent.model_validate(e)) for i, e in enumerate(generate_events(spec))]
    raised = []
    state = PartitionState(topic="t", partition=0)
    for start in range(0, len(events), 200):
        raised += pipeline.process(state, events[start:start + 200])
    emb = [r for r in raised if r.anomaly.signal == "embedding"]
    seen = [(r.anomaly.key.segment, r.anomaly.signal) for r in raised]
    assert emb, f"no embedding anomaly: {seen}"
    # billing's stream raises; the model-level stream (all routes, a quarter of them shifted)
    # may too, and nothing else does
    assert "billing" in {r.anomaly.key.segment for r in emb}
    assert {r.anomaly.key.segment for r in emb} <= {"billing", "all"}
    by_id = {ev.event_id: ev for _, ev in events}
    index = {ev.event_id: i for i, ev in events}
    # nothing fires before the change: the routes arrive in turn, a periodic order that a
    # position-based reference split turned into a false alarm every cooldown on "all"
    assert min(index[r.anomaly.event_id] for r in raised) >= spec.drifts[0].start, seen
    # billing's own stream shows the new topic: its exemplars are the crypto outputs
    exemplar_texts = [by_id[e].output for r in emb if r.anomaly.key.segment == "billing"
                      for e in r.anomaly.exemplars]
    novel = sum(any(w in t for w in ("coin", "NFT", "blockchain", "token", "ether"))
                for t in exemplar_texts)
    assert exemplar_texts and novel >= 0.8 * len(exemplar_texts), exemplar_texts
