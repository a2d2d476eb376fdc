"""The attribution worker: anomalies in, attribution reports out (see ``service``).

Importing this package does not import torch; the attribution library loads on the first job.
"""

from services.worker.errors import FAILURE_CODES, JobFailedError
from services.worker.report import AggregateRow, aggregate_mrr
from services.worker.settings import AttributionWorkerSettings, ModelTarget, find_target

__all__ = [
    "FAILURE_CODES",
    "AggregateRow",
    "AttributionWorkerSettings",
    "JobFailedError",
    "ModelTarget",
    "aggregate_mrr",
    "find_target",
]
