"""Evaluating attribution methods offline: labelled tasks and families, Acc / Cover / auPRC
(:mod:`.metrics`, :mod:`.evaluate`), the family suite and its report (:mod:`.suite`,
:mod:`.suite_report`), and the interval statistics they share (:mod:`.stats`).

No running service imports this package: it is what ``driftscope attribution eval`` runs.
"""
