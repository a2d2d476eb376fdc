"""Assemble the collector's parts from settings: the one place that reads them."""

from __future__ import annotations

import logging

from driftscope_llm.services.collector.embedder import (
    OnnxEmbedder,
    default_embedder_dir,
    export_embedder,
)
from driftscope_llm.services.collector.pipeline import Pipeline
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.config import EmbedderSettings, SegmentSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.security.redaction import RedactionSettings, Redactor
from driftscope_llm.services.store.base import StateStore

__all__ = ["build_pipeline", "open_embedder"]

log = logging.getLogger("driftscope.collector")


def open_embedder(settings: EmbedderSettings, *, export_if_missing: bool = True) -> OnnxEmbedder:
    """Open the exported embedder, exporting it first when missing (needs the export extra)."""
    model_dir = settings.model_dir or default_embedder_dir()
    if export_if_missing and not (model_dir / "driftscope-embedder.json").exists():
        log.info("exporting the embedder to %s (first use)", model_dir)
        export_embedder(model_dir, quantize=settings.quantized)
    return OnnxEmbedder(model_dir, quantized=settings.quantized, threads=settings.threads)


def build_pipeline(
    drift: DriftSettings,
    signals: SignalSettings,
    segments: SegmentSettings,
    embedder_settings: EmbedderSettings,
    store: StateStore,
    *,
    cooldown_s: float = 3600.0,
    redaction: RedactionSettings | None = None,
) -> Pipeline:
    embedder = open_embedder(embedder_settings) if embedder_settings.enabled else None
    return Pipeline(
        drift, SignalExtractor(signals), segments, store, embedder=embedder,
        embed_sampling_rate=embedder_settings.sampling_rate, cooldown_s=cooldown_s,
        redactor=Redactor(redaction),
    )
