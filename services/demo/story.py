"""The demo's steps after the stream exists: detect, open the incident, attribute, verify, report.

Each function is one step the CLI shows with its own progress; all outputs go under one
directory. Detection runs on the product's defaults, exactly as ``driftscope replay`` would with
no configuration: streams from the events' own ``route`` label beside the model-level stream,
default detector settings, v2 compared from its first event with v1's (short) reference, and
every anomaly of the v2 rollout folded into one incident whose facets are the signals, routes
and detectors that saw it.
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
from driftscope_llm.services.collector.segments import MODEL_STREAM, SegmentSettings
from driftscope_llm.services.collector.settings import EmbedderSettings
from driftscope_llm.services.demo.scenario import PLANTED_PREFIX
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.report import (
    ReportInputs,
    project_2d,
    read_events,
    render_report,
    signal_series,
)
from driftscope_llm.services.store import MemoryStore
from driftscope_llm.services.store.attribution_report import AttributedReport
from driftscope_llm.services.store.model import Incident
from driftscope_llm.services.vocabulary import Signal

__all__ = ["DEMO_DRIFT", "SEGMENTS", "Detection", "attribute", "detect", "opened_incidents",
           "pick_incident", "recall_at_k", "write_report"]

DEMO_DRIFT = DriftSettings()
"""The default detector settings: the demo tunes nothing."""
SEGMENTS = SegmentSettings()
"""The default segment settings: every label the events carry (here ``route``)."""


@dataclass
class Detection:
    raised: list[RaisedAnomaly]
    embedder: Any | None


def detect(stream: Path, store: MemoryStore, *, use_embedder: bool,
           on_progress: Callable[[int], None]) -> Detection:
    """Replay ``stream`` through the collector pipeline (embedder when one is exported)."""
    from driftscope_llm.services.collector.build import build_pipeline
    from driftscope_llm.services.collector.replay import ReplayStats, replay_file
    from driftscope_llm.services.collector.signals import SignalSettings

    emb = EmbedderSettings(enabled=use_embedder)
    pipeline = build_pipeline(DEMO_DRIFT, SignalSettings(), SEGMENTS, emb, store)
    raised = list(replay_file(stream, pipeline, ReplayStats(), on_progress=on_progress))
    return Detection(raised, pipeline.embedder)


def opened_incidents(raised: Sequence[RaisedAnomaly], store: MemoryStore) -> list[Incident]:
    """Every incident the replay opened or updated, in the order first raised, as each stands
    after the replay (every facet folded in): the demo's incidents table."""
    return [store.get_incident(i) for i in dict.fromkeys(r.incident.id for r in raised)]


def pick_incident(raised: Sequence[RaisedAnomaly], store: MemoryStore) -> Incident | None:
    """The incident to investigate: the one the rollout opened, as it stands after the replay
    (every facet folded in); the first opened when there are several."""
    opened = [r.incident.id for r in raised if r.opened]
    return store.get_incident(opened[0]) if opened else None


def attribute(incident: Incident, model_dir: Path, corpus: Sequence[Example], corpus_path: Path,
              out: Path, *, top_k: int, on_step: Callable[[str], None],
              adapter_dir: Path | None = None) -> AttributedReport:
    """Index the v2 corpus with v2 (repsim, gradsim), run the worker's job with verification.

    ``adapter_dir``: v2 is this LoRA adapter over ``model_dir`` (the real-model story)."""
    from driftscope_llm.attribution.index.feature_index import build_index
    from driftscope_llm.attribution.modeling import load_model
    from driftscope_llm.attribution.settings import AttributionSettings
    from driftscope_llm.services.worker.job import Attributor
    from driftscope_llm.services.worker.settings import ModelTarget, VerifySettings

    model = load_model(model_dir, adapter_dir, device="cpu")
    indexes = {}
    for method in ("repsim", "gradsim"):
        on_step(f"index {method}")
        build_index(model, corpus, out / method, AttributionSettings(method=method))
        indexes[method] = out / method
    target = ModelTarget(model_dir=model_dir, adapter_dir=adapter_dir, indexes=indexes,
                         top_k=top_k, verify=VerifySettings(enabled=True, corpus=corpus_path))
    on_step("attribute + verify")
    return Attributor(device="cpu").run(incident, "support-bot@v2", target)


def recall_at_k(report: AttributedReport, k: int, planted: Sequence[str]) -> float:
    top = [row.id for row in report.top(k)]
    return len(set(top) & set(planted)) / max(min(k, len(planted)), 1)


def _series_segment(incident: Incident) -> tuple[str, str] | None:
    """The ``(label, value)`` whose events the report's signal series draw: the headline's
    segment, or the segment facet with the largest relative effect when the headline is the
    model-level stream."""
    segments = [f for f in sorted(incident.facets, key=lambda f: -f.relative_effect)
                if f.segment != MODEL_STREAM]
    seg = incident.segment if incident.segment != MODEL_STREAM else (
        segments[0].segment if segments else MODEL_STREAM)
    label, sep, value = seg.partition("=")
    return (label, value) if sep else None


def write_report(path: Path, incident: Incident, stream: Path, raised: Sequence[RaisedAnomaly],
                 corpus: Sequence[Example], embedder: Any | None) -> None:
    """The HTML report of ``incident``, with every signal that alarmed in its series' segment."""
    where = _series_segment(incident) or ("route", "billing")
    seg_key = f"{where[0]}={where[1]}"
    same = [r for r in raised if r.incident.id == incident.id and r.anomaly.key.segment == seg_key]
    signals = list(dict.fromkeys(r.anomaly.signal for r in same if r.anomaly.signal
                                 != Signal.EMBEDDING))
    changes = {r.anomaly.signal: r.anomaly.change_index for r in same
               if r.anomaly.change_index is not None}
    events = read_events(stream)
    series = signal_series(events, incident.model_copy(update={"segment": where[1]}), signals,
                           segment_label=where[0], reference_n=DEMO_DRIFT.reference_size,
                           change_index={k: v for k, v in changes.items() if v is not None})
    inputs = ReportInputs(incident=incident, series=series, corpus={e.id: e for e in corpus},
                          notes=[f"Planted training examples have ids starting "
                                 f"'{PLANTED_PREFIX}' (highlighted)."])
    if embedder is None:
        inputs.embedding_note = ("The embedder is not available on this machine (driftscope "
                                 "models export-embedder), so the stream has no embeddings to "
                                 "draw.")
    else:
        mine = [e for e in events if (e.segment or {}).get(where[0]) == where[1]]
        ref = [e.output for e in mine if e.model_version != incident.model_version][:300]
        win = [e.output for e in mine if e.model_version == incident.model_version][:300]
        inputs.embedding = project_2d(np.asarray(embedder.encode(ref)),
                                      np.asarray(embedder.encode(win)),
                                      "all-MiniLM-L6-v2 embeddings of the outputs "
                                      f"(reference: previous version, window: "
                                      f"{incident.model_version}) on {seg_key}")
    path.write_text(render_report(inputs))
    path.with_suffix(".json").write_text(json.dumps(incident.model_dump(mode="json"), indent=1))
