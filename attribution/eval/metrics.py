"""Evaluation metrics of the seed paper (Li et al., arXiv 2409.19998) plus auPRC.

For one query with label ``y`` and a ranking of the whole corpus (best first):

* **Acc** — 1 if the top-ranked example has label ``y``, else 0 (averaged over queries).
* **Cover** — precision@k with ``k`` = number of corpus examples labelled ``y``: the share of
  the top-k that have label ``y`` (1 = the method retrieves exactly the responsible set).
* **auPRC** — average precision of the ranking with relevance ``label == y`` (area under the
  precision–recall curve, step-wise), as reported by RepT (arXiv 2510.02334).

All three are in [0, 1], higher is better. Pure Python.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["average_precision", "cover", "top1_accuracy"]


def top1_accuracy(ranked_labels: Sequence[object], label: object) -> float:
    """1.0 when the first ranked label equals ``label``."""
    return float(bool(ranked_labels) and ranked_labels[0] == label)


def cover(ranked_labels: Sequence[object], label: object, n_relevant: int) -> float:
    """Precision@k with ``k = n_relevant`` (the label's count in the corpus)."""
    if n_relevant <= 0:
        return 0.0
    top = ranked_labels[:n_relevant]
    return sum(1 for lab in top if lab == label) / n_relevant


def average_precision(ranked_labels: Sequence[object], label: object) -> float:
    """Average precision of the ranking; 0.0 when no example is relevant."""
    hits, total = 0, 0.0
    for i, lab in enumerate(ranked_labels, start=1):
        if lab == label:
            hits += 1
            total += hits / i
    return total / hits if hits else 0.0
