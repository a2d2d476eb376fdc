"""A signal's column of a batch, checked by the value rule of its kind in a few array operations.

:class:`~driftscope_llm.services.drift.records.ObservationBatch` carries one column per signal: a
list (``None`` where the signal was not measured) or a numpy array. :func:`coerce_column` applies
the same rules as :func:`~driftscope_llm.services.drift.reference.coerce` does value by value, and
counts the same ``missing`` / ``non_finite`` / ``invalid`` values, so a batch leaves exactly the
counts and values that observing its events one by one would. Float and bool arrays (and lists
holding only floats, only bools or only strings, once their ``None`` are set aside) take the
array path; anything else is checked value by value with the scalar rule. Embeddings are not
columns here: their rule depends on the reference's dimension, which can be fixed in the middle
of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift.reference import INVALID, MAX_ABS, MISSING, NON_FINITE, coerce
from driftscope_llm.services.drift.settings import SignalKind

__all__ = ["Column", "coerce_column"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Column:
    """The accepted values of a column and where they sit in the batch.

    ``values``: a float64 array for continuous and boolean signals (booleans as 0.0/1.0, as the
    window holds them), else a list of the coerced values; ``offsets``: their positions in the
    batch (increasing); ``counts``: how many values were missing, non-finite or invalid;
    ``rejected``: ``(offset, reason)`` of the non-finite and invalid ones, in order (a reference
    that freezes inside the batch records how many came before it).
    """

    values: Any
    offsets: IntArray
    counts: dict[str, int]
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def scalar(self, kind: SignalKind, j: int) -> Any:
        """Value ``j`` as the scalar rule returns it (``float``, ``bool`` or ``str``)."""
        v = self.values[j]
        if kind is SignalKind.CONTINUOUS:
            return float(v)
        if kind is SignalKind.BOOLEAN:
            return bool(v)
        return v


def _counts(missing: int = 0, non_finite: int = 0, invalid: int = 0) -> dict[str, int]:
    return {MISSING: missing, NON_FINITE: non_finite, INVALID: invalid}


def _all(n: int) -> IntArray:
    """The offsets of a column with every value accepted."""
    return np.arange(n, dtype=np.int64)


def _from_floats(kind: SignalKind, x: FloatArray) -> Column:
    """A column of real numbers (no ``None``, no bool), checked with array operations."""
    if kind is SignalKind.CONTINUOUS:
        # the common case in two reductions: NaN fails both comparisons
        if x.size and x.max() <= MAX_ABS and x.min() >= -MAX_ABS:
            return Column(x, _all(x.size), _counts())
        ok = np.abs(x) <= MAX_ABS  # False for NaN
        bad = x.size - int(np.count_nonzero(ok))
    else:  # boolean: the numbers 0 and 1
        ok = (x == 0.0) | (x == 1.0)
        bad = x.size - int(np.count_nonzero(ok))
        x = (x == 1.0).astype(np.float64)
    if bad == 0:
        return Column(x, _all(x.size), _counts())
    offsets = np.flatnonzero(ok).astype(np.int64)
    reason = NON_FINITE if kind is SignalKind.CONTINUOUS else INVALID
    rejected = [(j, reason) for j in np.flatnonzero(~ok).tolist()]
    return Column(x[offsets], offsets, {**_counts(), reason: bad}, rejected)


def _one_by_one(kind: SignalKind, column: Any) -> Column:
    """The scalar rule per value."""
    counts = _counts()
    vals: list[Any] = []
    offs: list[int] = []
    rejected: list[tuple[int, str]] = []
    for j, raw in enumerate(column):
        reason, value = coerce(kind, raw)
        if reason is not None:
            counts[reason] += 1
            if reason != MISSING:
                rejected.append((j, reason))
            continue
        vals.append(value)
        offs.append(j)
    offsets = np.asarray(offs, dtype=np.int64)
    if kind is SignalKind.CONTINUOUS or kind is SignalKind.BOOLEAN:
        return Column(np.asarray(vals, dtype=np.float64), offsets, counts, rejected)
    return Column(vals, offsets, counts, rejected)


def coerce_column(kind: SignalKind, column: Any) -> Column:
    """Check one signal's column of a batch (module docstring); never raises on bad values."""
    if isinstance(column, list) and any(v is None for v in column):
        # not measured on some events: check the others, then put them back in place
        present = [j for j, v in enumerate(column) if v is not None]
        inner = coerce_column(kind, [column[j] for j in present])
        where = np.asarray(present, dtype=np.int64)
        counts = {**inner.counts, MISSING: len(column) - len(present)}
        return Column(inner.values, where[inner.offsets], counts,
                      [(present[j], reason) for j, reason in inner.rejected])
    if kind is SignalKind.CONTINUOUS or kind is SignalKind.BOOLEAN:
        if isinstance(column, np.ndarray) and column.ndim == 1:
            if column.dtype.kind in "fiu":
                return _from_floats(kind, column.astype(np.float64, copy=False))
            if column.dtype.kind == "b":
                if kind is SignalKind.BOOLEAN:  # every value valid: as 0.0/1.0
                    return Column(column.astype(np.float64), _all(column.size), _counts())
                return Column(np.zeros(0), np.zeros(0, dtype=np.int64),
                              _counts(invalid=column.size),
                              [(j, INVALID) for j in range(column.size)])
        elif isinstance(column, list):
            want = float if kind is SignalKind.CONTINUOUS else bool
            if all(type(v) is want for v in column):
                x = np.array(column, dtype=np.float64)
                if want is bool:
                    return Column(x, _all(x.size), _counts())
                return _from_floats(kind, x)
    elif kind is SignalKind.CATEGORICAL and isinstance(column, list) and all(
            type(v) is str for v in column):
        return Column(column, _all(len(column)), _counts())
    return _one_by_one(kind, column)
