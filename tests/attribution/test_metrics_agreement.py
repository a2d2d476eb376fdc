from __future__ import annotations

import pytest

from driftscope_llm.attribution.agreement import agreement_for_query
from driftscope_llm.attribution.eval.metrics import average_precision, cover, top1_accuracy


def test_metrics_on_a_hand_ranking() -> None:
    ranked = ["y", "n", "y", "n", "y"]
    assert top1_accuracy(ranked, "y") == 1.0
    assert top1_accuracy(ranked, "n") == 0.0
    assert cover(ranked, "y", 3) == pytest.approx(2 / 3)
    assert average_precision(ranked, "y") == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert average_precision(["n", "n"], "y") == 0.0
    assert cover(["y", "y", "n"], "y", 2) == 1.0


def test_agreement_identical_and_disjoint() -> None:
    a = agreement_for_query({"m1": ["a", "b", "c"], "m2": ["a", "b", "c"]}, k=3)
    pair = a.pairs[0]
    assert pair.overlap == 1.0
    assert pair.spearman == pytest.approx(1.0)
    assert pair.kendall == pytest.approx(1.0)
    d = agreement_for_query({"m1": ["a", "b"], "m2": ["c", "d"]}, k=2)
    assert d.pairs[0].overlap == 0.0
    assert d.pairs[0].spearman is not None and d.pairs[0].spearman < 0
    reversed_ = agreement_for_query({"m1": ["a", "b", "c"], "m2": ["c", "b", "a"]}, k=3)
    assert reversed_.pairs[0].spearman == pytest.approx(-1.0)
    assert agreement_for_query({"only": ["a"]}, k=1).mean_overlap is None


def test_agreement_three_methods_has_three_pairs() -> None:
    a = agreement_for_query({"x": ["a", "b"], "y": ["a", "c"], "z": ["b", "a"]}, k=2)
    assert len(a.pairs) == 3
    assert a.mean_overlap == pytest.approx((0.5 + 1.0 + 0.5) / 3)
