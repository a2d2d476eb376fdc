"""Every Redis key driftscope writes, built in this one module.

All keys live under one prefix (``redis.key_prefix``, default ``driftscope:``), so several
deployments can share a Redis and ``SCAN prefix*`` finds everything one of them owns.

=======================================  ========================================================
``cp:{topic}:{partition}``               collector checkpoint head (JSON): offset, totals, streams
``cps:{topic}:{partition}:{stream}``     one stream's detector state in that checkpoint (JSON)
``ref:{model}:{version}:{segment}``      reference snapshot of a stream (JSON), set once
``versions:{model}``                     sorted set: version → first time seen
``incident:{id}``                        incident record (JSON), expires after ``retention_s``
``incidents``                            sorted set: id → opened time (time-range queries)
``live:{dedup key}``                     "id|expires" of the incident a continuing anomaly updates
``lease:attribution:{incident id}``      the worker holding the incident's attribution job
``attribution-sent:{incident id}``       set once the incident's AttributionEvent was published
=======================================  ========================================================

The webhook dead-letter list is named by its own setting (``webhooks.dead_letter_key``), not here.
"""

from __future__ import annotations

from dataclasses import dataclass

from driftscope_llm.services.keys import REDIS_RESERVED, join_key

__all__ = ["StoreKeys"]


@dataclass(frozen=True)
class StoreKeys:
    """The key names under one ``prefix`` (module docstring)."""

    prefix: str = "driftscope:"

    # Parts that come from traffic or settings are joined by driftscope_llm.services.keys.join_key:
    # a model named "a:b" cannot share a key with model "a", version "b" (ordinary names are
    # unchanged).
    def checkpoint(self, topic: str, partition: int) -> str:
        return self.prefix + join_key("cp", topic, str(partition), sep=":",
                                      reserved=REDIS_RESERVED)

    def checkpoint_stream(self, topic: str, partition: int, stream: str) -> str:
        """One stream's detector state within a partition's checkpoint (split per stream)."""
        return self.prefix + join_key("cps", topic, str(partition), stream, sep=":",
                                      reserved=REDIS_RESERVED)

    def reference(self, model: str, version: str, segment: str) -> str:
        return self.prefix + join_key("ref", model, version, segment, sep=":",
                                      reserved=REDIS_RESERVED)

    def versions(self, model: str) -> str:
        return self.prefix + join_key("versions", model, sep=":", reserved=REDIS_RESERVED)

    @property
    def incident_prefix(self) -> str:
        """What :meth:`incident` puts before the id (the claim script appends ids itself)."""
        return f"{self.prefix}incident:"

    def incident(self, incident_id: str) -> str:
        return f"{self.incident_prefix}{incident_id}"

    @property
    def incident_index(self) -> str:
        return f"{self.prefix}incidents"

    def live(self, dedup: str) -> str:
        return self.prefix + join_key("live", dedup, sep=":", reserved=REDIS_RESERVED)

    def job_lease(self, incident_id: str) -> str:
        return f"{self.prefix}lease:attribution:{incident_id}"

    def published(self, incident_id: str) -> str:
        return f"{self.prefix}attribution-sent:{incident_id}"
