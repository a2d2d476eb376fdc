"""A handful of examples that alone teach a behaviour are ranked top by the default method."""

from __future__ import annotations

from driftscope_llm.attribution.index.feature_index import build_index, open_index
from driftscope_llm.attribution.settings import AttributionSettings

from .conftest import PLANTED, PLANTED_QUERY


def test_default_method_ranks_planted_examples_first(gpt2_model, planted_corpus, tmp_path) -> None:
    index = build_index(gpt2_model, planted_corpus, tmp_path / "idx", AttributionSettings())
    (result,) = index.query([PLANTED_QUERY], top_k=len(PLANTED))
    assert {h.id for h in result.results} == {e.id for e in PLANTED}
    assert result.method == "repsim:mean_response"


def test_planted_examples_lead_under_every_method(gpt2_model, planted_corpus, tmp_path) -> None:
    build_index(gpt2_model, planted_corpus, tmp_path / "g", AttributionSettings(method="gradsim"))
    for method in ("gradsim:cosine", "gradsim:dot", "lissa", "datainf"):
        index = open_index(tmp_path / "g", model=gpt2_model, method=method)
        (result,) = index.query([PLANTED_QUERY], top_k=1)
        assert result.results[0].id.startswith("planted-"), method
