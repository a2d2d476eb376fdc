"""The demo scenario: a support bot fine-tuned twice, the second time on planted bad data."""

from driftscope_llm.services.demo.scenario import (
    MODEL_NAME,
    PLANTED_PREFIX,
    ScenarioSettings,
    clean_corpus,
    generate,
    planted_examples,
    production_events,
    production_prompts,
    train_versions,
)

__all__ = [
    "MODEL_NAME", "PLANTED_PREFIX", "ScenarioSettings", "clean_corpus", "generate",
    "planted_examples", "production_events", "production_prompts", "train_versions",
]
