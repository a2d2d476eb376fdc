"""BM25 (Robertson & Zaragoza 2009) over the training texts: the lexical baseline.

Not a registered :class:`~driftscope_llm.attribution.methods.base.Method` — it needs no model —
but reported beside every method in the evaluation, as the field does (on Bergson's GPT-2 /
WikiText leaderboard BM25 beats TrackStar on counterfactual QLD). A training example's document
is its prompt and response joined; a query's terms are its prompt and response. Tokens are
lower-cased word characters (single characters kept, no stop-word list, so symbol sequences and
short codes count). Scores via the maintained ``bm25s`` library (Lù 2024), its defaults
``k1 = 1.5``, ``b = 0.75``, Lucene idf.

Score: unbounded, ≥ 0; higher = more shared rare terms = more responsible.
"""

from __future__ import annotations

from collections.abc import Sequence

from driftscope_llm.attribution.formatting import ExampleLike
from driftscope_llm.services.errors import MissingExtraError

try:
    import bm25s
    import torch
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("bm25s", "attribution") from exc

__all__ = ["bm25_scores"]

_TOKENS = r"(?u)\b\w+\b"


def _text(e: ExampleLike) -> str:
    return f"{e.prompt} {e.response}"


def bm25_scores(corpus: Sequence[ExampleLike], queries: Sequence[ExampleLike]) -> torch.Tensor:
    """(queries × corpus) float32 BM25 scores, corpus in the given order."""
    docs = bm25s.tokenize([_text(e) for e in corpus], token_pattern=_TOKENS, stopwords=None,
                          show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(docs, show_progress=False)
    vocab = set(docs.vocab)
    rows = []
    for q in queries:
        terms = bm25s.tokenize([_text(q)], token_pattern=_TOKENS, stopwords=None,
                               return_ids=False, show_progress=False)[0]
        known = [t for t in terms if t in vocab]
        if not known:
            rows.append(torch.zeros(len(corpus)))
            continue
        rows.append(torch.as_tensor(retriever.get_scores(known), dtype=torch.float32))
    return torch.stack(rows) if rows else torch.zeros(0, len(corpus))
