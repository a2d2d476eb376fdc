"""The collector's own settings that are not the drift detectors': the embedder.

A sub-model composed into :class:`driftscope_llm.services.config.CollectorSettings`
(``embedder:`` in the YAML file, ``DRIFTSCOPE_EMBEDDER__SAMPLING_RATE`` and so on); the other
collector sub-models live beside their code: ``SignalSettings`` (:mod:`.signals`),
``SegmentSettings`` (:mod:`.segments`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

__all__ = ["EmbedderSettings"]


class EmbedderSettings(BaseModel):
    """The embedding signal: whether it runs, which exported model, how much of the traffic."""

    enabled: bool = Field(
        default=True, description="Compute the embedding signal wherever the embedder is "
                                  "available (exported, or exportable on first use).")
    required: bool = Field(
        default=False, description="Refuse to start when the embedder is not available.")
    model_dir: Path | None = Field(
        default=None, description="Exported embedder; default: the user cache directory."
    )
    quantized: bool = Field(
        default=True, description="Run the int8 model (per-channel dynamic quantisation; cosine "
                                  "to fp32 ≥ 0.99 on average, same detections, 2-2.5× faster).")
    sampling_rate: float = Field(
        default=0.25, ge=0.0, le=1.0,
        description="Share of events embedded; bounds embedding cost on busy streams.",
    )
    batch_size: int = Field(
        default=8, ge=1, description="Texts per ONNX Runtime call of the fp32 model, after "
                                     "sorting a poll's texts by length (int8: one per call).")
    threads: int = Field(
        default=1, ge=1, description="ONNX Runtime intra-op threads (one leaves the other cores "
                                     "to the consumer loop and other replicas).")
    max_length: int = Field(
        default=128, ge=8, le=512, description="Word pieces embedded per output; the rest is "
                                               "cut (the model was trained on 256).")
