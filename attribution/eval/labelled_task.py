"""The record every evaluation task generator returns: a labelled corpus and labelled queries.

Apart from the generators (:mod:`driftscope_llm.attribution.eval.tasks` for the seed paper's three,
:mod:`driftscope_llm.attribution.eval.families` for the independent families) so that both can use
it without importing each other; :func:`driftscope_llm.attribution.eval.tasks.make_task` finds
either.
"""

from __future__ import annotations

from dataclasses import dataclass

from driftscope_llm.attribution.data import Example

__all__ = ["Task"]


@dataclass(frozen=True)
class Task:
    """A labelled corpus and labelled queries; relevance = equal ``label``.

    ``target`` names the behaviour the counterfactual metrics remove and retrain for (its
    queries are the ones scored by QLD and LDS); ``None`` = the first query's label.
    """

    name: str
    corpus: list[Example]
    queries: list[Example]
    target: str | None = None

    @property
    def target_label(self) -> str:
        return self.target or str(self.queries[0].label)
