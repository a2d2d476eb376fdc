"""The behavioural regression gate: compare a candidate model with a baseline on a probe suite.

Both models generate for every probe (:mod:`.generation`: a local Hugging Face directory or an
OpenAI-compatible endpoint); the outputs become OutputEvents and go through production's signals
and calibrated detectors with the baseline as the reference (:mod:`.gate`); the verdict and its
evidence are rendered as JSON, JUnit XML and HTML (:mod:`.report`). Probe suites are JSONL files
(:mod:`.probes`), generated from a corpus, by perturbation, or from an incident
(:mod:`.incident_probes`). See ``docs/regression.md``.
"""

from driftscope_llm.services.regress.gate import GateResult, GateSettings, run_gate
from driftscope_llm.services.regress.generation import (
    GenerationSettings,
    Generator,
    Sample,
    open_generator,
)
from driftscope_llm.services.regress.probes import Probe, perturb, read_suite, write_suite

__all__ = [
    "GateResult",
    "GateSettings",
    "GenerationSettings",
    "Generator",
    "Probe",
    "Sample",
    "open_generator",
    "perturb",
    "read_suite",
    "run_gate",
    "write_suite",
]
