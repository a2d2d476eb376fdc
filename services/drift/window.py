"""The current window of one signal: the last ``capacity`` values with their event ids.

A ring buffer. Continuous and boolean values live in a float64 array (booleans as 0.0/1.0), so a
test round reads the window with one concatenation and a batch of values enters it with one
slice assignment (:meth:`SignalWindow.extend`); category strings and embedding items live in a
list. Event ids and stream event indices are lists beside them. Exact windows, not sketches:
tests on sketches are unstable (whylogs #684).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift.codec import decode_array, encode_array
from driftscope_llm.services.drift.settings import SignalKind

__all__ = ["EmbeddingItem", "SignalWindow"]

EmbeddingItem = tuple[npt.NDArray[np.float64], int]
"""An embedding in a window: its whitened reference coordinates and its topic cluster."""

_NUMERIC = frozenset({SignalKind.CONTINUOUS, SignalKind.BOOLEAN})


def _uncount(counts: Counter[Any], value: Any) -> None:
    left = counts[value] - 1
    if left:
        counts[value] = left
    else:  # absent, as in a Counter of the values: a zero would enter shares_tv's key set
        del counts[value]


class SignalWindow:
    """Last ``capacity`` values of a signal (floats; booleans as 0.0/1.0; category strings;
    :data:`EmbeddingItem` for embeddings), their event ids and stream event indices.

    ``new_since_test`` counts values appended since the monitor last ran the window tests (the
    monitor resets it). Oldest first is the order of every accessor.
    """

    __slots__ = ("_counts", "_head", "_ids", "_idx", "_size", "_vals", "appended", "capacity",
                 "kind", "new_since_test", "numeric")

    def __init__(self, kind: SignalKind, capacity: int) -> None:
        self.kind = kind
        self.capacity = capacity
        self.numeric = kind in _NUMERIC
        self._vals: Any = np.zeros(capacity) if self.numeric else [None] * capacity
        self._ids: list[str] = [""] * capacity
        self._idx: list[int] = [0] * capacity
        self._head = 0  # next slot to write; equals _size until the buffer is full
        self._size = 0
        self.new_since_test = 0
        self.appended = 0  # values ever appended to this object (not saved with the state)
        # categories: how many of each the window holds, kept as values come and go
        self._counts: Counter[Any] | None = Counter() if kind is SignalKind.CATEGORICAL else None

    def __len__(self) -> int:
        return self._size

    def append(self, value: Any, event_id: str, index: int) -> None:
        """Add one value (a float for numeric kinds), evicting the oldest when full."""
        h = self._head
        counts = self._counts
        if counts is not None:
            if self._size == self.capacity:
                _uncount(counts, self._vals[h])
            counts[value] = counts.get(value, 0) + 1
        self._vals[h] = value
        self._ids[h] = event_id
        self._idx[h] = index
        self._head = h + 1 if h + 1 < self.capacity else 0
        if self._size < self.capacity:
            self._size += 1
        self.new_since_test += 1
        self.appended += 1

    def extend(self, values: Any, event_ids: Sequence[str], indices: Sequence[int]) -> None:
        """Append values in order, as :meth:`append` on each would (at most two slice copies).

        ``values`` is a float array for numeric kinds, else a list; ``indices`` a list of ints.
        """
        k = len(event_ids)
        if k == 0:
            return
        cap = self.capacity
        self.new_since_test += k
        self.appended += k
        counts = self._counts
        if counts is not None:
            over = self._size + k - cap  # values the new ones overwrite
            if k >= cap:
                counts.clear()
            elif over > 0:
                at = self._head if self._size == cap else 0
                gone = self._vals[at : at + over]
                if len(gone) < over:
                    gone = gone + self._vals[: over - len(gone)]
                counts.subtract(gone)
                for key in [key for key, c in counts.items() if c <= 0]:
                    del counts[key]
            counts.update(values[max(0, k - cap) :])
        if k >= cap:  # only the last ``cap`` survive: lay them out from slot 0
            cut = k - cap
            self._put(0, values[cut:], event_ids[cut:], indices[cut:])
            self._head, self._size = 0, cap
            return
        h = self._head
        first = min(k, cap - h)
        self._put(h, values[:first], event_ids[:first], indices[:first])
        if first < k:
            self._put(0, values[first:], event_ids[first:], indices[first:])
        self._head = (h + k) % cap
        self._size = min(self._size + k, cap)

    def _put(self, at: int, values: Any, ids: Sequence[str], idx: Sequence[int]) -> None:
        end = at + len(ids)
        self._vals[at:end] = values
        self._ids[at:end] = ids
        self._idx[at:end] = idx

    def _ordered(self, items: list[Any]) -> list[Any]:
        if self._size < self.capacity:
            return items[: self._size]
        return items[self._head :] + items[: self._head]

    def values(self) -> list[Any]:
        """Values, oldest first (Python floats for numeric kinds)."""
        if self.numeric:
            out: list[Any] = self.floats().tolist()
            return out
        return self._ordered(self._vals)

    def ids(self) -> list[str]:
        return self._ordered(self._ids)

    def indices(self) -> list[int]:
        return self._ordered(self._idx)

    def ordered_parts(self) -> tuple[npt.NDArray[np.float64], ...]:
        """Numeric windows: views whose concatenation is :meth:`floats` (no copy)."""
        v: npt.NDArray[np.float64] = self._vals
        if self._size < self.capacity:
            return (v[: self._size],)
        h = self._head
        return (v[h:], v[:h])

    def floats(self) -> npt.NDArray[np.float64]:
        """Continuous/boolean windows as a (fresh) float64 array, oldest first."""
        if not self.numeric:
            return np.asarray(self.values(), dtype=np.float64)
        v: npt.NDArray[np.float64] = self._vals
        if self._size < self.capacity:
            return v[: self._size].copy()
        h = self._head
        return v.copy() if h == 0 else np.concatenate((v[h:], v[:h]))

    def category_counts(self) -> dict[Any, int]:
        """Categorical windows: each category's count (``Counter(values())`` as a dict)."""
        if self._counts is None:
            raise TypeError("category counts are kept for categorical windows only")
        return dict(self._counts)

    def live_category_counts(self) -> Counter[Any]:
        """Categorical windows: the running counts themselves (read them, never change them)."""
        if self._counts is None:
            raise TypeError("category counts are kept for categorical windows only")
        return self._counts

    def count_nonzero(self) -> int:
        """Numeric windows: how many values are not 0 (a boolean window's true count)."""
        return int(np.count_nonzero(self._vals[: self._size]))

    def clear(self) -> None:
        self._vals = np.zeros(self.capacity) if self.numeric else [None] * self.capacity
        self._ids = [""] * self.capacity
        self._idx = [0] * self.capacity
        self._head = self._size = self.new_since_test = 0
        if self._counts is not None:
            self._counts.clear()

    def state_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"capacity": self.capacity, "ids": self.ids(),
                             "indices": encode_array(np.asarray(self.indices(), dtype=np.int64)),
                             "new_since_test": self.new_since_test}
        if self.kind is SignalKind.CATEGORICAL:
            d["values"] = self.values()
        elif self.kind is SignalKind.EMBEDDING:
            vals = self.values()
            dim = vals[0][0].size if vals else 0
            d["projections"] = encode_array(np.stack([v[0] for v in vals]) if vals
                                            else np.zeros((0, dim)))
            d["clusters"] = encode_array(np.asarray([v[1] for v in vals], dtype=np.int64))
        else:
            d["values"] = encode_array(self.floats())
        return d

    @classmethod
    def from_state(cls, kind: SignalKind, d: dict[str, Any]) -> SignalWindow:
        w = cls(kind, int(d["capacity"]))
        ids = [str(x) for x in d["ids"]]
        idx = [int(x) for x in decode_array(d["indices"])]
        vals: Any
        if kind is SignalKind.CATEGORICAL:
            vals = [str(x) for x in d["values"]]
        elif kind is SignalKind.EMBEDDING:
            proj = decode_array(d["projections"])
            clusters = decode_array(d["clusters"])
            vals = [(proj[i].copy(), int(clusters[i])) for i in range(len(ids))]
        else:
            vals = np.asarray(decode_array(d["values"]), dtype=np.float64)
        if len(vals) != len(ids) or len(idx) != len(ids):
            raise ValueError("window state: values, ids and indices differ in length")
        w.extend(vals, ids, idx)
        w.new_since_test = int(d["new_since_test"])
        return w
