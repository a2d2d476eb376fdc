"""Typed, documented settings of the drift monitor, loadable from YAML or JSON.

:class:`DriftSettings` is an *algorithm* setting in the sense of STYLE.md rule 4: it is saved beside
detector state (as a fingerprint) and state saved under other settings is refused.

The false-alarm budget
----------------------
``max_false_alarms_per_100k`` (default 1) is the expected number of false alarms per 100 000
events of one model, all signals, detectors and segments together. It is split Bonferroni-style
(see :func:`driftscope_llm.services.drift.calibration.split_budget`): each of the ``J`` (signal,
detector) pairs of a stream gets ``b = budget / (100 000 · streams_per_event · J)`` expected false
alarms per stream event. Streams partition a model's events (one segment per event), so per-event
rates add up to the model-level rate without dividing by the number of segments;
``streams_per_event`` covers collectors that feed one event into more than one stream (e.g. a
per-segment and a model-wide stream). ``max_streams_per_model`` is the cardinality cap the
collector enforces on segments; it does not enter the budget.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from driftscope_llm.services.drift.kinds import SignalKind
from driftscope_llm.services.drift.registry import available_detectors
from driftscope_llm.services.errors import ConfigError
from driftscope_llm.services.vocabulary import Signal

__all__ = [
    "DEFAULT_SIGNALS",
    "DriftSettings",
    "EffectUnit",
    "SignalConfig",
    "SignalKind",
]


class EffectUnit(StrEnum):
    """Unit of a continuous signal's effect size: the Wasserstein-1 distance window vs reference
    (which equals the absolute mean shift for a pure location shift), divided by ..."""

    STD = "std"
    """... the reference standard deviation (``0.25`` = a quarter of the per-event spread)."""
    RELATIVE = "relative"
    """... the absolute reference mean (``0.15`` = a 15 % change of a positive quantity)."""
    ABSOLUTE = "absolute"
    """... nothing: signal units."""


class SignalConfig(BaseModel):
    """How one signal is monitored.

    ``min_effect`` is the smallest change an operator cares about, in the signal kind's effect
    unit: continuous: Wasserstein-1 distance in ``effect_unit``; boolean: absolute change of the
    rate (and the relative change must also reach ``min_relative_effect``); categorical: total
    variation distance between window and reference distributions; embedding: total variation
    distance between the window's and the reference's shares of the reference's topic clusters.
    Window tests raise only when the estimated effect reaches it; sequential detectors place their
    reference value (CUSUM ``k``) at it, so their statistic drifts down under smaller changes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: SignalKind
    detectors: tuple[str, ...] = Field(
        description="Registered detector names to run on this signal (see available_detectors())."
    )
    min_effect: float = Field(gt=0, description="Smallest change that may raise (see above).")
    min_relative_effect: float = Field(
        default=0.0, ge=0,
        description="Boolean signals: the relative rate change |p/p_ref - 1| must reach this too.",
    )
    effect_unit: EffectUnit = Field(
        default=EffectUnit.STD, description="Continuous signals: unit of min_effect."
    )
    window_size: int | None = Field(
        default=None, ge=10, description="Override of DriftSettings.window_size for this signal."
    )
    min_reference_values: int | None = Field(
        default=None, ge=10,
        description="Override of DriftSettings.min_reference_values for this signal (a signal "
                    "whose tests need more reference values, e.g. sampled embeddings).")


def _continuous(min_effect: float, unit: EffectUnit) -> SignalConfig:
    return SignalConfig(kind=SignalKind.CONTINUOUS, detectors=("ks", "cusum"),
                        min_effect=min_effect, effect_unit=unit)


DEFAULT_SIGNALS: dict[str, SignalConfig] = {  # keys: every Signal
    Signal.LOGPROB_MEAN: _continuous(0.25, EffectUnit.STD),
    Signal.LOGPROB_MIN: _continuous(0.25, EffectUnit.STD),
    Signal.LOW_LOGPROB_SHARE: _continuous(0.25, EffectUnit.STD),
    Signal.ENTROPY_MEAN: _continuous(0.25, EffectUnit.STD),
    Signal.CONFIDENCE: _continuous(0.25, EffectUnit.STD),
    Signal.LENGTH_CHARS: _continuous(0.15, EffectUnit.RELATIVE),
    Signal.LENGTH_TOKENS: _continuous(0.15, EffectUnit.RELATIVE),
    Signal.LATENCY_MS: _continuous(0.20, EffectUnit.RELATIVE),
    Signal.REFUSAL: SignalConfig(kind=SignalKind.BOOLEAN,
                            detectors=("two_proportion", "bernoulli_cusum"),
                            min_effect=0.02, min_relative_effect=0.5),
    Signal.FINISH_REASON: SignalConfig(kind=SignalKind.CATEGORICAL, detectors=("chi_square",),
                                  min_effect=0.05),
    Signal.EMBEDDING: SignalConfig(kind=SignalKind.EMBEDDING,
                              detectors=("embedding_projection", "embedding_clusters",
                                         "embedding_novelty"),
                              min_effect=0.05, window_size=500, min_reference_values=600),
}
"""The signals the collector produces, with defaults an operator can start from: a quarter of a
reference standard deviation for logprob-like signals, 15 % for lengths, 20 % for latency, +2
percentage points *and* +50 % for the refusal rate, 5 % of mass moving between finish reasons, 5 %
of outputs moving between topic clusters or to topics unlike any in the reference (so that a
topic shift of 10 % of outputs is twice the minimum, not on it). Embeddings are usually computed
for a sample of events only (a quarter by default), so their reference waits for 600 embeddings
(2 400 events at that rate; 300 held out, enough to place the 2 % novelty tail and to measure
cluster shares to ±2 points) and their window holds 500."""



class DriftSettings(BaseModel):
    """Settings of a :class:`~driftscope_llm.services.drift.StreamMonitor` (one per model, version,
    segment).

    Why the default sizes (``reference_size`` 1000, ``window_size`` 500, ``test_every`` 50): LLM
    traffic is counted in thousands of events per day per model, and a segment may see a tenth of
    that; a stream must be useful within its first day. With 1000 reference values, the reference
    quantiles and rates a test compares with are off by about ``1/√1000`` ≈ 3 % of a standard
    deviation, an eighth of the smallest continuous change that may raise (0.25 std), so a
    larger reference buys little power and costs days of collection (the calibration accounts
    for the reference's error either way: a smaller one costs delay, never false alarms). A
    window of 500 values fills with changed values in 500 events: half the wait of 1000, while a
    0.25-std shift over 500 values is still about 4 standard errors at the budgeted level.
    Testing every 50 values halves the wait to the next test; the per-test level halves with it
    (the budget is per event), which costs ``√(2 ln 2)`` ≈ a few percent of threshold.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    signals: dict[str, SignalConfig] = Field(
        default_factory=lambda: dict(DEFAULT_SIGNALS),
        description="Signal name → how it is monitored. Names match Observation.values keys.",
    )
    reference_size: int = Field(
        default=1000, ge=20,
        description="The first N events of a stream form its reference (unless one is given).",
    )
    min_reference_values: int = Field(
        default=200, ge=10,
        description="A signal seen on fewer events keeps extending its reference until it has "
                    "this many values (sparse signals such as sampled embeddings).",
    )
    window_size: int = Field(default=500, ge=10, description="Values per signal in the window.")
    min_window: int = Field(default=100, ge=5, description="No window test on fewer values.")
    test_every: int = Field(
        default=50, ge=1, description="A window test runs after this many new values of a signal."
    )
    max_false_alarms_per_100k: float = Field(
        default=1.0, gt=0,
        description="Expected false alarms per 100 000 events of one model, all signals, "
                    "detectors and segments together (module docstring).",
    )
    streams_per_event: int = Field(
        default=1, ge=1, description="How many streams of one model see each event."
    )
    max_streams_per_model: int = Field(
        default=64, ge=1,
        description="Cardinality cap on (version, segment) streams per model, enforced by the "
                    "collector (extra segments fold into one); not part of the budget.",
    )
    cooldown_events: int = Field(
        default=1000, ge=0,
        description="After an alarm on (signal, detector): re-arm, stay silent this many events.",
    )
    n_exemplars: int = Field(default=10, ge=0, description="Event ids attached to each anomaly.")
    seed: int = Field(default=0, description="Seeds clustering and permutation confirmations.")
    permutations: int = Field(
        default=999, ge=19,
        description="Permutations that confirm an approximate-null window test before it raises.",
    )
    psi_bins: int = Field(default=10, ge=2, description="Reference-quantile bins of the PSI test.")
    embedding_components: int = Field(
        default=16, ge=1, description="Reference principal directions the embedding test uses."
    )
    embedding_clusters: int = Field(
        default=8, ge=2, description="k-means topic clusters fitted on the reference embeddings."
    )
    winsor_quantile: float = Field(
        default=0.001, ge=0, lt=0.5,
        description="Page-Hinkley clips values to these reference quantiles (tail robustness).",
    )
    bootstrap_draws: int = Field(
        default=20, ge=1,
        description="Bayesian-bootstrap draws of the reference's null law over which sequential "
                    "thresholds average their false-alarm rate.",
    )
    arl_states: int = Field(
        default=100, ge=20,
        description="Cells of the Brook-Evans Markov chain used to compute run lengths.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.min_window > self.window_size:
            raise ValueError("min_window must not exceed window_size")
        for name, sig in self.signals.items():
            if sig.window_size is not None and sig.window_size < self.min_window:
                raise ValueError(f"signals.{name}.window_size: below min_window")
        _check_detectors(self)
        return self

    def window_for(self, signal: str) -> int:
        """The window size of ``signal`` (its override, else the global one)."""
        override = self.signals[signal].window_size
        return self.window_size if override is None else override

    def min_reference_for(self, signal: str) -> int:
        """Values ``signal`` needs before its reference freezes (its override, else the global
        ``min_reference_values``)."""
        override = self.signals[signal].min_reference_values
        return self.min_reference_values if override is None else override

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of these settings; state records it."""
        canon = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    @classmethod
    def from_file(cls, path: str | Path) -> DriftSettings:
        """Read settings from a YAML (``.yaml``/``.yml``) or JSON file.

        Raises :class:`~driftscope_llm.services.errors.ConfigError` with ``path`` and, for invalid
        values, the dotted ``field`` that failed.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read drift settings: {exc}", path=str(p)) from exc
        try:
            data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{p}: not valid {p.suffix or 'YAML'}: {exc}", path=str(p)) from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping", path=str(p))
        return cls.from_mapping(data, path=str(p))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, path: str | None = None) -> DriftSettings:
        """Validate a mapping (as read from a file); errors as in :meth:`from_file`."""
        try:
            settings = cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or None
            msg = str(err["msg"]).removeprefix("Value error, ")
            if field is None and ": " in msg:  # model-level checks name their field first
                field = msg.split(": ", 1)[0]
            raise ConfigError(f"{path or 'drift settings'}: {field}: {msg}",
                              path=path, field=field) from exc
        return settings


def _check_detectors(settings: DriftSettings) -> None:
    known = available_detectors()
    for name, sig in settings.signals.items():
        field = f"signals.{name}.detectors"
        if not sig.detectors:
            raise ValueError(f"{field}: at least one detector is needed")
        for det in sig.detectors:
            if det not in known:
                raise ValueError(f"{field}: unknown detector {det!r} (known: {sorted(known)})")
            if sig.kind not in known[det]:
                raise ValueError(f"{field}: detector {det!r} does not run on {sig.kind} signals")
