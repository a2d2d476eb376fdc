"""A probe suite from an incident: the drifted prompts and their neighbourhood.

An incident names the outputs that drifted most (its exemplars, with their prompts). Gating the
next fine-tune on those exact strings alone would prove little — a fix that memorised them would
pass — so the suite also takes, for each exemplar prompt, its ``k`` nearest prompts

* in the fine-tuning **corpus** (the examples that taught the behaviour and their neighbours), and
* in the **reference traffic**: production prompts of the same model and segment answered by
  an earlier version (so the suite asks what users of that segment asked before the drift).

Nearness is lexical: cosine similarity of TF-IDF vectors over word unigrams and bigrams
(lower-cased, split on non-alphanumerics; idf ``log((1 + N) / (1 + df)) + 1`` over the pool the
neighbours are drawn from). It needs no model and finds rephrasings that share words; it does not
find paraphrases that share none (use an embedding-based suite for those; ``docs/regression.md``).
A prompt is used once, under the first role it is found in (exemplar, then corpus, then traffic).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.regress.errors import ProbeSuiteError
from driftscope_llm.services.regress.probes import Probe
from driftscope_llm.services.store.model import Incident

__all__ = ["Candidate", "incident_suite", "nearest"]

_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Candidate:
    """A prompt a neighbour may be drawn from, with the id it is known by."""

    id: str
    prompt: str


def _terms(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in pairwise(words)]


def _tfidf(docs: Sequence[list[str]], idf: dict[str, float],
           vocab: dict[str, int]) -> npt.NDArray[np.float64]:
    out = np.zeros((len(docs), len(vocab)))
    for i, terms in enumerate(docs):
        for t, c in Counter(terms).items():
            j = vocab.get(t)
            if j is not None:
                out[i, j] = c * idf[t]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    unit: npt.NDArray[np.float64] = np.divide(out, norms, out=np.zeros_like(out),
                                              where=norms > 0)
    return unit


def nearest(queries: Sequence[str], pool: Sequence[Candidate],
            k: int) -> list[list[tuple[Candidate, float]]]:
    """For each query, the ``k`` most similar pool prompts (cosine of TF-IDF, best first); pool
    prompts equal to the query, and those sharing no term with it, are left out."""
    if not pool or k <= 0:
        return [[] for _ in queries]
    pool_terms = [_terms(c.prompt) for c in pool]
    df = Counter(t for terms in pool_terms for t in set(terms))
    n = len(pool)
    idf = {t: math.log((1 + n) / (1 + d)) + 1.0 for t, d in df.items()}
    vocab = {t: j for j, t in enumerate(sorted(idf))}
    p = _tfidf(pool_terms, idf, vocab)
    q = _tfidf([_terms(x) for x in queries], idf, vocab)
    sims = q @ p.T
    out = []
    for i, query in enumerate(queries):
        order = np.argsort(-sims[i], kind="stable")
        picked = [(pool[j], float(sims[i, j])) for j in order
                  if sims[i, j] > 0 and pool[j].prompt != query][:k]
        out.append(picked)
    return out


def incident_suite(incident: Incident, *, corpus: Sequence[Candidate] = (),
                   traffic: Sequence[Candidate] = (), k: int = 3) -> list[Probe]:
    """The incident's exemplar prompts, each followed by its ``k`` nearest corpus and traffic
    prompts (module docstring). Ids: ``exemplar:<event id>``, ``corpus:<example id>``,
    ``traffic:<event id>``; ``group`` is the exemplar's event id; neighbours carry their
    similarity in ``metadata``."""
    exemplars = [(e.event_id, e.prompt) for e in incident.exemplars if e.prompt]
    if not exemplars:
        raise ProbeSuiteError(
            f"incident {incident.id} has no exemplar prompts to build a suite from (its events "
            "carried no 'prompt')")
    seen: set[str] = set()
    out: list[Probe] = []

    def add(pid: str, prompt: str, source: str, group: str, meta: dict[str, object]) -> None:
        if prompt in seen or any(p.id == pid for p in out):
            return
        seen.add(prompt)
        out.append(Probe(id=pid, prompt=prompt, source=source, group=group,
                         metadata={"incident": incident.id, **meta}))

    prompts = [p for _, p in exemplars]
    for eid, prompt in exemplars:
        add(f"exemplar:{eid}", prompt, "exemplar", eid, {"segment": incident.segment})
    near_corpus = nearest(prompts, corpus, k)
    near_traffic = nearest(prompts, traffic, k)
    for (eid, _), nc, nt in zip(exemplars, near_corpus, near_traffic, strict=True):
        for cand, sim in nc:
            add(f"corpus:{cand.id}", cand.prompt, "corpus", eid, {"similarity": round(sim, 4)})
        for cand, sim in nt:
            add(f"traffic:{cand.id}", cand.prompt, "traffic", eid,
                {"similarity": round(sim, 4)})
    return out
