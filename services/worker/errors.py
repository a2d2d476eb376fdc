"""Why an attribution job failed: one error with a machine-readable ``code``.

::

    AttributionError (driftscope_llm.services.errors)
    └── JobFailedError              the job cannot produce a report; .code, .incident_id, .detail

``code`` is one of :data:`FAILURE_CODES`. A failed job is not retried by the worker: the incident
moves to ``failed`` with the reason, and the worker carries on with the next one.
"""

from __future__ import annotations

from driftscope_llm.services.errors import AttributionError

__all__ = ["FAILURE_CODES", "JobFailedError"]

#: Every failure code a report can carry, and what it means.
FAILURE_CODES = {
    "no_target": "no model/index is configured for this model and version",
    "no_exemplars": "the incident has no exemplar with output text to attribute",
    "model_load": "the configured model or adapter directory cannot be loaded",
    "index_missing": "a configured index directory or its manifest does not exist",
    "index_mismatch": "an index was built for another model, corpus or settings",
    "index_corrupt": "an index shard is missing or fails its sha256, or the manifest is unreadable",
    "time_limit": "the job ran past its time limit",
    "out_of_memory": "the accelerator ran out of memory even at batch size 1",
    "internal": "an unexpected error in the attribution library (see the worker's log)",
}


class JobFailedError(AttributionError):
    """An attribution job that must end as ``failed``; ``code`` is a key of FAILURE_CODES."""

    def __init__(self, code: str, detail: str, *, incident_id: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.incident_id = incident_id
