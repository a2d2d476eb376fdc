"""Data handling: redaction of personal data and credentials, and secrets from files."""

from driftscope_llm.services.security.redaction import (
    BUILTIN_DETECTORS,
    Finding,
    RedactionPattern,
    RedactionSettings,
    Redactor,
    luhn_valid,
)

__all__ = [
    "BUILTIN_DETECTORS",
    "Finding",
    "RedactionPattern",
    "RedactionSettings",
    "Redactor",
    "luhn_valid",
]
