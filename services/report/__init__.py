"""Self-contained HTML incident reports with inline SVG plots (no scripts, no network)."""

from driftscope_llm.services.report.html import render_report
from driftscope_llm.services.report.inputs import (
    EmbeddingPicture,
    ReportInputs,
    SignalSeries,
    project_2d,
    read_events,
    signal_series,
)

__all__ = [
    "EmbeddingPicture", "ReportInputs", "SignalSeries", "project_2d", "read_events",
    "render_report", "signal_series",
]
