"""How much to trust one incident's attribution, in words an on-call engineer can act on.

Two pieces of evidence, both cheap at report time:

1. **Measured accuracy on the closest task family.** The family suite
   (:mod:`driftscope_llm.attribution.eval.suite`, table in docs/attribution.md) measured each
   method's Cover (share of the behaviour's training examples in its top-k) and QLD (loss rise on
   retraining without its picks, over random picks) on families that differ in where the
   behaviour lives. The incident's drifted signal says which family it resembles: a shift in
   the outputs' *embedding* is a new topic; a change in *refusals* is a behaviour flipped by
   something in the prompt (a trigger); a change in length (characters or tokens), confidence
   (logprobs, entropy, the gateway's score), finish reasons or latency is a change in how the
   model answers the same kind of prompt (style). Every signal the collector emits
   (:class:`~driftscope_llm.services.vocabulary.Signal`) has a family; a name it does not emit
   (a signal added by a settings file) uses the method's worst family.
2. **Agreement between methods** on this incident (mean overlap@k of their top-k lists), when
   more than one method ran: methods that see different evidence (hidden states vs gradients)
   and still agree are rarely both wrong.

:func:`assess` turns them into a level (``high`` / ``medium`` / ``low``) and one sentence.
``high``: the measured lower bound of Cover on the closest family is ≥ 0.9 and methods that ran
do not disagree (overlap ≥ 0.5). ``low``: that bound is < 0.6 or the methods mostly disagree
(overlap < 0.2). ``medium`` otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from driftscope_llm.services.vocabulary import Signal, signal_or_none

__all__ = ["MEASURED", "SIGNAL_FAMILY", "Measured", "TrustAssessment", "assess"]

#: the family an incident on each drift signal resembles (module docstring); every
#: :class:`Signal` has one (``tests/unit/test_vocabulary.py``)
SIGNAL_FAMILY: dict[Signal, str] = {
    Signal.EMBEDDING: "topic",
    Signal.REFUSAL: "trigger",
    Signal.LENGTH_CHARS: "style",
    Signal.LENGTH_TOKENS: "style",
    Signal.LOGPROB_MEAN: "style",
    Signal.LOGPROB_MIN: "style",
    Signal.LOW_LOGPROB_SHARE: "style",
    Signal.ENTROPY_MEAN: "style",
    Signal.CONFIDENCE: "style",
    Signal.FINISH_REASON: "style",
    Signal.LATENCY_MS: "style",
}


@dataclass(frozen=True)
class Measured:
    """A method's measured Cover (mean and lower 95% bound) and QLD mean on one family."""

    cover: float
    cover_lo: float
    qld: float


#: Measured by ``driftscope attribution eval --suite`` (docs/attribution.md, "Family suite");
#: method spec -> family -> figures. Update together with that table.
#: Checked on a real model on 2026-12-07 (docs/attribution.md, "On a real model", the
#: ``smollm2/lora`` rows of ``driftscope attribution eval --suite --configs smollm2/lora
#: --families style --seeds 0``): repsim:mean_response on style, Cover 0.87 [0.81, 0.93] on
#: SmolLM2-135M-Instruct + LoRA, the same mean as the tiny figure below (kept);
#: repsim:last_response on style 0.49 [0.44, 0.54], disjoint from the tiny 0.72 [0.69, 0.75],
#: so its style Cover below is the real model's (its QLD stays the tiny one). Rule, trigger
#: and topic are not yet measured on it.
MEASURED: dict[str, dict[str, Measured]] = {
    "repsim:mean_response": {
        "style": Measured(0.87, 0.84, 0.1),
        "rule": Measured(0.36, 0.33, -0.08),
        "trigger": Measured(1.0, 0.99, 0.14),
        "topic": Measured(0.99, 0.99, 0.06),
    },
    "repsim:last_response": {
        "style": Measured(0.49, 0.44, 0.04),  # smollm2/lora (comment above)
        "rule": Measured(0.35, 0.33, 0.13),
        "trigger": Measured(0.94, 0.92, 0.16),
        "topic": Measured(0.78, 0.74, 0.06),
    },
    "repsim:last_prompt": {
        "style": Measured(0.27, 0.26, -0.05),
        "rule": Measured(0.37, 0.34, -0.02),
        "trigger": Measured(0.95, 0.91, 0.09),
        "topic": Measured(0.59, 0.55, 0.07),
    },
    "gradsim:cosine": {
        "style": Measured(0.44, 0.42, 0.02),
        "rule": Measured(0.3, 0.29, 0.16),
        "trigger": Measured(0.45, 0.41, -0.0),
        "topic": Measured(0.42, 0.4, 0.04),
    },
    "gradsim:dot": {
        "style": Measured(0.43, 0.4, 0.02),
        "rule": Measured(0.3, 0.28, 0.09),
        "trigger": Measured(0.23, 0.19, -0.0),
        "topic": Measured(0.41, 0.38, 0.02),
    },
    "lissa": {
        "style": Measured(0.4, 0.39, 0.07),
        "rule": Measured(0.3, 0.29, 0.23),
        "trigger": Measured(0.46, 0.42, 0.01),
        "topic": Measured(0.41, 0.4, 0.02),
    },
    "datainf": {
        "style": Measured(0.45, 0.42, 0.02),
        "rule": Measured(0.29, 0.27, 0.13),
        "trigger": Measured(0.33, 0.29, 0.0),
        "topic": Measured(0.42, 0.4, 0.01),
    },
    "ekfac": {
        "style": Measured(0.48, 0.46, 0.08),
        "rule": Measured(0.31, 0.3, 0.16),
        "trigger": Measured(0.56, 0.51, 0.17),
        "topic": Measured(0.49, 0.47, 0.01),
    },
    "trackstar": {
        "style": Measured(0.48, 0.46, 0.07),
        "rule": Measured(0.29, 0.28, 0.12),
        "trigger": Measured(0.52, 0.48, -0.01),
        "topic": Measured(0.45, 0.43, 0.04),
    },
}


@dataclass(frozen=True)
class TrustAssessment:
    """The verdict: ``level``, the evidence behind it, and ``advice`` (one sentence)."""

    level: str
    method: str
    family: str | None
    measured_cover: float | None
    measured_cover_lo: float | None
    measured_qld: float | None
    agreement: float | None
    advice: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _level(cover_lo: float | None, agreement: float | None) -> str:
    if cover_lo is None:
        return "low" if agreement is not None and agreement < 0.2 else "medium"
    if cover_lo < 0.6 or (agreement is not None and agreement < 0.2):
        return "low"
    if cover_lo >= 0.9 and (agreement is None or agreement >= 0.5):
        return "high"
    return "medium"


def assess(method: str, signal: str | None, agreement: float | None) -> TrustAssessment:
    """Trust in ``method``'s ranking for an incident on ``signal`` (module docstring)."""
    table = MEASURED.get(method, {})
    known = signal_or_none(signal)
    family = SIGNAL_FAMILY[known] if known is not None else None
    figures = table.get(family) if family else None
    if figures is None and table:
        family, figures = min(table.items(), key=lambda kv: kv[1].cover_lo)
    level = _level(figures.cover_lo if figures else None, agreement)
    if figures is None:
        evidence = f"{method} has no measured accuracy"
    else:
        evidence = (f"on {family}-like incidents {method} found {figures.cover:.0%} of the "
                    f"behaviour's examples in its top-k (at least {figures.cover_lo:.0%})")
    agree = "" if agreement is None else f"; methods agree on {agreement:.0%} of their top-k"
    action = {
        "high": "act on the top examples (remove or fix them in the fine-tuning data)",
        "medium": "review the top examples before acting; run counterfactual verification "
                  "if the change is costly",
        "low": "treat the ranking as leads only; inspect by hand or run counterfactual "
               "verification before changing the data",
    }[level]
    return TrustAssessment(level, method, family, figures.cover if figures else None,
                           figures.cover_lo if figures else None,
                           figures.qld if figures else None, agreement,
                           f"{level} trust: {evidence}{agree}. {action[0].upper()}{action[1:]}.")
