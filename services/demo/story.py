"""The demo's steps after the stream exists: detect, open the incident, attribute, verify, report.

Each function is one step the CLI shows with its own progress; all outputs go under one
directory. The detector settings are sized for the demo stream (a few hundred events per route
and version): a 200-event reference per (version, route), tests every 25 values on windows of 100.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftscope_llm.attribution.data import Example
from driftscope_llm.services.collector.pipeline import RaisedAnomaly
from driftscope_llm.services.config import EmbedderSettings, SegmentSettings
from driftscope_llm.services.demo.scenario import PLANTED_PREFIX, ROUTES
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.drift.settings import DEFAULT_SIGNALS
from driftscope_llm.services.report import (
    ReportInputs,
    project_2d,
    read_events,
    render_report,
    signal_series,
)
from driftscope_llm.services.store import MemoryStore
from driftscope_llm.services.store.model import Incident
from driftscope_llm.services.store.report import AttributedReport

__all__ = ["DEMO_DRIFT", "Detection", "attribute", "detect", "pick_incident", "recall_at_k",
           "write_report"]

REFERENCE_SIZE = 200
DEMO_DRIFT = DriftSettings(
    reference_size=REFERENCE_SIZE, window_size=100, min_window=50, test_every=25,
    min_reference_values=100, cooldown_events=400,
    signals={**DEFAULT_SIGNALS,
             "embedding": DEFAULT_SIGNALS["embedding"].model_copy(update={"window_size": 100})},
)
SEGMENTS = SegmentSettings(label="route", allowed=list(ROUTES))


@dataclass
class Detection:
    raised: list[RaisedAnomaly]
    embedder: Any | None


def detect(stream: Path, store: MemoryStore, *, use_embedder: bool,
           on_progress: Callable[[int], None]) -> Detection:
    """Replay ``stream`` through the collector pipeline (embedder when one is exported)."""
    from driftscope_llm.services.collector.build import build_pipeline
    from driftscope_llm.services.collector.embedder import default_embedder_dir
    from driftscope_llm.services.collector.replay import ReplayStats, replay_file
    from driftscope_llm.services.collector.signals import SignalSettings

    emb_on = use_embedder and (default_embedder_dir() / "driftscope-embedder.json").exists()
    emb = EmbedderSettings(enabled=emb_on, sampling_rate=1.0)
    pipeline = build_pipeline(DEMO_DRIFT, SignalSettings(), SEGMENTS, emb, store)
    raised = list(replay_file(stream, pipeline, ReplayStats(), on_progress=on_progress))
    return Detection(raised, pipeline.embedder)


def pick_incident(raised: Sequence[RaisedAnomaly]) -> RaisedAnomaly | None:
    """The incident to investigate: a refusal alarm if any, else the first anomaly raised."""
    for r in raised:
        if r.anomaly.signal == "refusal":
            return r
    return raised[0] if raised else None


def attribute(incident: Incident, model_dir: Path, corpus: Sequence[Example], corpus_path: Path,
              out: Path, *, top_k: int,
              on_step: Callable[[str], None]) -> AttributedReport:
    """Index the v2 corpus with v2 (repsim, gradsim), run the worker's job with verification."""
    from driftscope_llm.attribution.index import build_index
    from driftscope_llm.attribution.modeling import load_model
    from driftscope_llm.attribution.settings import AttributionSettings
    from driftscope_llm.services.worker.job import Attributor
    from driftscope_llm.services.worker.settings import ModelTarget, VerifySettings

    model = load_model(model_dir, device="cpu")
    indexes = {}
    for method in ("repsim", "gradsim"):
        on_step(f"index {method}")
        build_index(model, corpus, out / method, AttributionSettings(method=method))
        indexes[method] = out / method
    target = ModelTarget(model_dir=model_dir, indexes=indexes, top_k=top_k,
                         verify=VerifySettings(enabled=True, corpus=corpus_path))
    on_step("attribute + verify")
    return Attributor(device="cpu").run(incident, "support-bot@v2", target)


def recall_at_k(report: AttributedReport, k: int, planted: Sequence[str]) -> float:
    top = [row.id for row in report.top(k)]
    return len(set(top) & set(planted)) / max(min(k, len(planted)), 1)


def write_report(path: Path, incident: Incident, stream: Path, raised: Sequence[RaisedAnomaly],
                 corpus: Sequence[Example], embedder: Any | None) -> None:
    """The HTML report of ``incident``, with every signal that alarmed on its stream."""
    same = [r for r in raised if r.incident.segment == incident.segment
            and r.incident.model_version == incident.model_version]
    signals = list(dict.fromkeys(r.anomaly.signal for r in same if r.anomaly.signal
                                 != "embedding"))
    changes = {r.anomaly.signal: r.anomaly.change_index for r in same
               if r.anomaly.change_index is not None}
    events = read_events(stream)
    series = signal_series(events, incident, signals, segment_label="route",
                           reference_n=REFERENCE_SIZE,
                           change_index={k: v for k, v in changes.items() if v is not None})
    inputs = ReportInputs(incident=incident, series=series, corpus={e.id: e for e in corpus},
                          notes=[f"Planted training examples have ids starting "
                                 f"'{PLANTED_PREFIX}' (highlighted)."])
    if embedder is None:
        inputs.embedding_note = ("The embedder is not exported on this machine (driftscope models"
                                 " export-embedder), so the stream has no embeddings to draw.")
    else:
        mine = [e for e in events if (e.segment or {}).get("route") == incident.segment]
        ref = [e.output for e in mine if e.model_version != incident.model_version][:300]
        win = [e.output for e in mine if e.model_version == incident.model_version][:300]
        inputs.embedding = project_2d(np.asarray(embedder.encode(ref)),
                                      np.asarray(embedder.encode(win)),
                                      "all-MiniLM-L6-v2 embeddings of the outputs "
                                      f"(reference: previous version, window: "
                                      f"{incident.model_version}) on {incident.segment}")
    path.write_text(render_report(inputs))
    path.with_suffix(".json").write_text(json.dumps(incident.model_dump(mode="json"), indent=1))
