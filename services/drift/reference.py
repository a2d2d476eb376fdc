"""Reference samples per signal, how they are collected, and the serialisable snapshot.

A stream's reference is, by default, its first ``reference_size`` events; a signal seen on fewer
than ``min_reference_values`` of them keeps extending its own reference until it has that many.
A :class:`ReferenceSnapshot` (from another model version's monitor, or stored by name) can seed a
monitor instead. Reference values are never tested: windows hold only later events.

Value rules (one per kind; a value that breaks them is counted, never raised):

* continuous: any real number except ``bool``; NaN, ±inf and magnitudes above ``1e100`` (which
  cannot be squared in float64) are *non-finite* (excluded, counted);
* boolean: ``bool`` or the numbers 0 and 1;
* categorical: ``str`` (ints are turned into their decimal string);
* embedding: a 1-D array of finite floats whose length matches the reference's;
* ``None`` means "not measured" and is counted as missing; anything else is *invalid*.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift.codec import decode_array, encode_array
from driftscope_llm.services.drift.embedding_space import (
    EmbeddingReference,
    fit_embedding_reference,
)
from driftscope_llm.services.drift.records import StreamKey
from driftscope_llm.services.drift.settings import DriftSettings, SignalKind
from driftscope_llm.services.errors import StateMismatchError

__all__ = [
    "BooleanReference",
    "CategoricalReference",
    "ContinuousReference",
    "EmbeddingReference",
    "ReferenceCollector",
    "ReferenceSnapshot",
    "SignalReference",
    "coerce",
    "reference_from_dict",
    "reference_kind",
]

FloatArray = npt.NDArray[np.float64]

MISSING, NON_FINITE, INVALID = "missing", "non_finite", "invalid"
MAX_ABS = 1e100
"""Largest magnitude a continuous value or embedding component may have."""


def coerce(kind: SignalKind, value: Any, dim: int | None = None) -> tuple[str | None, Any]:
    """Apply the value rule of ``kind``: ``(None, parsed)`` or ``(reason, None)``."""
    if value is None:
        return MISSING, None
    if kind is SignalKind.CONTINUOUS:
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
            return INVALID, None
        x = float(value)
        return (None, x) if -MAX_ABS <= x <= MAX_ABS else (NON_FINITE, None)
    if kind is SignalKind.BOOLEAN:
        if isinstance(value, bool | np.bool_):
            return None, bool(value)
        if isinstance(value, int | float | np.number) and float(value) in (0.0, 1.0):
            return None, float(value) == 1.0
        return INVALID, None
    if kind is SignalKind.CATEGORICAL:
        if isinstance(value, str):
            return None, value
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            return None, str(int(value))
        return INVALID, None
    return _coerce_embedding(value, dim)


def _coerce_embedding(value: Any, dim: int | None) -> tuple[str | None, Any]:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return INVALID, None
    if a.ndim != 1 or a.size == 0 or (dim is not None and a.size != dim):
        return INVALID, None
    if not np.all(np.abs(a) <= MAX_ABS):  # also false for NaN
        return NON_FINITE, None
    return None, a


@dataclass(frozen=True, slots=True)
class ContinuousReference:
    """Sorted finite reference values; ``non_finite`` counts values excluded from them."""

    values: FloatArray
    non_finite: int = 0
    mean: float = field(init=False)
    std: float = field(init=False)

    def __post_init__(self) -> None:
        v = self.values
        object.__setattr__(self, "mean", float(v.mean()) if v.size else math.nan)
        object.__setattr__(self, "std", float(v.std()) if v.size else math.nan)

    @property
    def n(self) -> int:
        return int(self.values.size)

    def summary(self) -> dict[str, Any]:
        v = self.values
        return {"n": self.n, "mean": self.mean, "std": self.std,
                "median": float(np.median(v)) if v.size else math.nan,
                "non_finite": self.non_finite}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "continuous", "values": encode_array(self.values),
                "non_finite": self.non_finite}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContinuousReference:
        return cls(np.sort(decode_array(dict(d["values"])).astype(np.float64)),
                   int(d.get("non_finite", 0)))


@dataclass(frozen=True, slots=True)
class BooleanReference:
    """``n_true`` of ``n`` reference events were true."""

    n: int
    n_true: int

    @property
    def rate(self) -> float:
        return self.n_true / self.n if self.n else math.nan

    def summary(self) -> dict[str, Any]:
        return {"n": self.n, "rate": self.rate}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "boolean", "n": self.n, "n_true": self.n_true}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BooleanReference:
        return cls(int(d["n"]), int(d["n_true"]))


@dataclass(frozen=True, slots=True)
class CategoricalReference:
    """Reference count per category."""

    counts: dict[str, int]

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def shares(self) -> dict[str, float]:
        n = self.n
        return {c: k / n for c, k in sorted(self.counts.items())} if n else {}

    def summary(self) -> dict[str, Any]:
        return {"n": self.n, "shares": self.shares()}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "categorical", "counts": dict(sorted(self.counts.items()))}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalReference:
        return cls({str(k): int(v) for k, v in dict(d["counts"]).items()})


SignalReference = ContinuousReference | BooleanReference | CategoricalReference | EmbeddingReference

_KINDS: dict[str, Any] = {
    "continuous": ContinuousReference, "boolean": BooleanReference,
    "categorical": CategoricalReference, "embedding": EmbeddingReference,
}


def reference_from_dict(d: Mapping[str, Any]) -> SignalReference:
    try:
        cls = _KINDS[str(d["kind"])]
    except KeyError as exc:
        raise StateMismatchError(f"unknown reference kind in saved state: {exc}") from exc
    ref: SignalReference = cls.from_dict(dict(d))
    return ref


def reference_kind(ref: SignalReference) -> SignalKind:
    """The signal kind a reference belongs to."""
    if isinstance(ref, ContinuousReference):
        return SignalKind.CONTINUOUS
    if isinstance(ref, BooleanReference):
        return SignalKind.BOOLEAN
    if isinstance(ref, CategoricalReference):
        return SignalKind.CATEGORICAL
    return SignalKind.EMBEDDING


@dataclass(frozen=True, slots=True)
class ReferenceSnapshot:
    """The frozen references of a stream's signals, serialisable with :meth:`to_dict`.

    ``source`` is the stream it was taken from; ``n_events`` the events its reference phase saw.
    """

    signals: Mapping[str, SignalReference]
    n_events: int
    source: StreamKey | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_events": self.n_events,
            "source": None if self.source is None else self.source.to_dict(),
            "signals": {name: ref.to_dict() for name, ref in sorted(self.signals.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceSnapshot:
        try:
            src = d.get("source")
            return cls(
                signals={str(k): reference_from_dict(v) for k, v in dict(d["signals"]).items()},
                n_events=int(d["n_events"]),
                source=None if src is None else StreamKey.from_dict(src),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateMismatchError(f"malformed reference snapshot: {exc}") from exc


@dataclass
class ReferenceCollector:
    """Accumulates one signal's reference values until it is frozen."""

    kind: SignalKind
    values: list[Any] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    n_true: int = 0
    n: int = 0
    non_finite: int = 0
    invalid: int = 0
    dim: int | None = None

    def add(self, value: Any) -> None:
        """Add a value that passed :func:`coerce`."""
        self.n += 1
        if self.kind is SignalKind.CONTINUOUS:
            self.values.append(value)
        elif self.kind is SignalKind.BOOLEAN:
            self.n_true += bool(value)
        elif self.kind is SignalKind.CATEGORICAL:
            self.counts[value] += 1
        else:
            if self.dim is None:
                self.dim = int(value.size)
            self.values.append(value)

    def build(self, settings: DriftSettings, seed: int) -> SignalReference:
        """Freeze into a reference (embedding: fit the reference space)."""
        if self.kind is SignalKind.CONTINUOUS:
            return ContinuousReference(np.sort(np.asarray(self.values, dtype=np.float64)),
                                       self.non_finite)
        if self.kind is SignalKind.BOOLEAN:
            return BooleanReference(self.n, self.n_true)
        if self.kind is SignalKind.CATEGORICAL:
            return CategoricalReference(dict(self.counts))
        return fit_embedding_reference(
            np.stack(self.values), components=settings.embedding_components,
            clusters=settings.embedding_clusters, seed=seed,
            invalid=self.invalid + self.non_finite)

    def state_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"n": self.n, "n_true": self.n_true, "non_finite": self.non_finite,
                             "invalid": self.invalid, "counts": dict(self.counts), "dim": self.dim}
        if self.kind is SignalKind.CONTINUOUS:
            d["values"] = encode_array(np.asarray(self.values, dtype=np.float64))
        elif self.kind is SignalKind.EMBEDDING:
            d["values"] = encode_array(np.stack(self.values) if self.values
                                       else np.zeros((0, 0)))
        return d

    @classmethod
    def from_state(cls, kind: SignalKind, d: Mapping[str, Any]) -> ReferenceCollector:
        c = cls(kind, n=int(d["n"]), n_true=int(d["n_true"]), non_finite=int(d["non_finite"]),
                invalid=int(d["invalid"]), counts=Counter({str(k): int(v)
                                                           for k, v in d["counts"].items()}),
                dim=None if d.get("dim") is None else int(d["dim"]))
        if kind is SignalKind.CONTINUOUS:
            c.values = [float(x) for x in decode_array(d["values"])]
        elif kind is SignalKind.EMBEDDING:
            c.values = list(decode_array(d["values"]))
        return c
