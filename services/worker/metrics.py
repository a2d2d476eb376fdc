"""Prometheus metrics of the attribution worker (names used by deploy/prometheus and grafana/).

* ``driftscope_attribution_jobs_total{outcome}`` — finished jobs, ``attributed`` | ``failed``;
* ``driftscope_attribution_job_seconds`` — histogram of a finished job's wall time;
* ``driftscope_attribution_jobs_in_progress`` — 1 while a job runs;
* ``driftscope_attribution_skipped_total{reason}`` — anomaly events that started no job
  (``done``: already attributed; ``not_found``; ``malformed``; ``lease_lost``);
* ``driftscope_attribution_failures_total{code}`` — failed jobs by failure code.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["WorkerMetrics"]


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Counter("driftscope_attribution_jobs_total", "Finished attribution jobs.",
                            ["outcome"], registry=registry)
        for outcome in ("attributed", "failed"):
            self.jobs.labels(outcome)
        self.seconds = Histogram(
            "driftscope_attribution_job_seconds", "Wall time of finished attribution jobs.",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600), registry=registry)
        self.in_progress = Gauge("driftscope_attribution_jobs_in_progress",
                                 "Attribution jobs running now.", registry=registry)
        self.skipped = Counter("driftscope_attribution_skipped_total",
                               "Anomaly events that started no attribution job.", ["reason"],
                               registry=registry)
        self.failures = Counter("driftscope_attribution_failures_total",
                                "Failed attribution jobs by failure code.", ["code"],
                                registry=registry)
