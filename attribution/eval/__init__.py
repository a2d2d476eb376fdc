"""Evaluating attribution methods offline: labelled tasks and families, Acc / Cover / auPRC
(:mod:`.metrics`, :mod:`.evaluate`), and the family suite and its report (:mod:`.suite`,
:mod:`.suite_report`). Interval statistics live in :mod:`driftscope_llm.attribution.stats`, shared
with the worker's counterfactual verification.

No running service imports this package: it is what ``driftscope attribution eval`` runs.
"""
