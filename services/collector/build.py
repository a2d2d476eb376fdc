"""Assemble the collector's parts from settings: the one place that reads them."""

from __future__ import annotations

import logging
from collections.abc import Callable

from rich.console import Console

from driftscope_llm.services.collector.cardinality import StreamCaps
from driftscope_llm.services.collector.clock import ClockSettings
from driftscope_llm.services.collector.embedder import (
    OnnxEmbedder,
    default_embedder_dir,
    export_embedder,
    has_int8,
    is_exported,
    quantize_embedder,
)
from driftscope_llm.services.collector.pipeline import Pipeline
from driftscope_llm.services.collector.segments import SegmentSettings
from driftscope_llm.services.collector.settings import EmbedderSettings
from driftscope_llm.services.collector.signals import SignalExtractor, SignalSettings
from driftscope_llm.services.drift import DriftSettings
from driftscope_llm.services.errors import MissingExtraError
from driftscope_llm.services.security.redaction import RedactionSettings, Redactor
from driftscope_llm.services.store.base import StateStore

__all__ = ["build_pipeline", "open_embedder"]

log = logging.getLogger("driftscope.collector")


def open_embedder(settings: EmbedderSettings, *, export_if_missing: bool = True) -> OnnxEmbedder:
    """Open the exported embedder, exporting it first when missing (needs the export extra).

    The export (about a minute, once per machine) shows its progress on standard error only.
    """
    model_dir = settings.model_dir or default_embedder_dir()
    err = Console(stderr=True)
    if export_if_missing and not is_exported(model_dir):
        log.info("exporting the embedder to %s (first use)", model_dir)
        err.print(f"exporting the output embedder to {model_dir} (first use, about a minute)",
                  highlight=False, markup=False)
        with err.status("exporting the embedder") as status:
            export_embedder(model_dir, quantize=settings.quantized,
                            on_step=lambda step: status.update(f"embedder: {step}"))
    quantized = settings.quantized
    if quantized and is_exported(model_dir) and not has_int8(model_dir):
        # an fp32-only (or older int8) export: quantising takes seconds and no torch
        log.info("quantising the embedder in %s to int8 (first use)", model_dir)
        try:
            with err.status("quantising the embedder to int8 (first use, seconds)"):
                quantize_embedder(model_dir)
        except MissingExtraError as exc:
            log.warning("running the fp32 embedder: %s", exc)
            quantized = False
    return OnnxEmbedder(model_dir, quantized=quantized, threads=settings.threads,
                        max_length=settings.max_length, batch_size=settings.batch_size)


def available_embedder(settings: EmbedderSettings) -> OnnxEmbedder | None:
    """The embedder when ``settings.enabled`` and it is exported or exportable, else ``None``.

    ``enabled`` (the default) means "wherever the embedder is available": without an export and
    without the ``embedder-export`` extra to make one, the embedding signal is off and a warning
    says how to turn it on. With ``required``, that is an error instead.
    """
    if not settings.enabled:
        return None
    try:
        return open_embedder(settings)
    except MissingExtraError:
        if settings.required:
            raise
        log.warning("embedding signal off: no exported embedder and no 'embedder-export' extra "
                    "to export one (pip install 'driftscope[embedder-export]', then "
                    "`driftscope models export-embedder`)")
        return None


def build_pipeline(
    drift: DriftSettings,
    signals: SignalSettings,
    segments: SegmentSettings,
    embedder_settings: EmbedderSettings,
    store: StateStore,
    *,
    cooldown_s: float = 3600.0,
    redaction: RedactionSettings | None = None,
    caps: StreamCaps | None = None,
    clock: ClockSettings | None = None,
    on_segment_fold: Callable[[str], None] | None = None,
) -> Pipeline:
    embedder = available_embedder(embedder_settings)
    return Pipeline(
        drift, SignalExtractor(signals), segments, store, embedder=embedder,
        embed_sampling_rate=embedder_settings.sampling_rate, cooldown_s=cooldown_s,
        redactor=Redactor(redaction), caps=caps, clock=clock, on_segment_fold=on_segment_fold,
    )
