"""The attribution worker: anomalies in, attribution reports out (see ``service``).

Importing this package does not import torch; the attribution library loads on the first job.
"""

from driftscope_llm.services.worker.aggregate import AggregateRow, aggregate_mrr
from driftscope_llm.services.worker.errors import FAILURE_CODES, JobFailedError
from driftscope_llm.services.worker.settings import ModelTarget, find_target

__all__ = [
    "FAILURE_CODES",
    "AggregateRow",
    "JobFailedError",
    "ModelTarget",
    "aggregate_mrr",
    "find_target",
]
