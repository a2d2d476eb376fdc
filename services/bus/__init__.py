"""The message bus: one small interface, a Kafka implementation and an in-memory one.

Components (collector, worker) are written against :class:`Bus` and driven by the shared
:class:`ConsumerLoop`; entry points build a :class:`~driftscope_llm.services.bus.kafka.KafkaBus`
(import it from :mod:`driftscope_llm.services.bus.kafka`, which loads kafka-python), tests a
:class:`MemoryBus` from a :class:`MemoryBroker`. The Kafka SASL preflight is
:func:`driftscope_llm.services.bus.preflight.check_kafka_auth`.
"""

from driftscope_llm.services.bus.base import Bus, Message, Partition, RebalanceHook
from driftscope_llm.services.bus.loop import ConsumerLoop, LoopHandler
from driftscope_llm.services.bus.memory import MemoryBroker, MemoryBus
from driftscope_llm.services.bus.settings import KafkaSettings, TopicSettings

__all__ = [
    "Bus",
    "ConsumerLoop",
    "KafkaSettings",
    "LoopHandler",
    "MemoryBroker",
    "MemoryBus",
    "Message",
    "Partition",
    "RebalanceHook",
    "TopicSettings",
]
