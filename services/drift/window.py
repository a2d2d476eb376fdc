"""The current window of one signal: the last ``capacity`` values with their event ids.

A ring buffer of plain Python lists (one list assignment per event keeps ``observe`` cheap);
windows are copied into numpy arrays only when a test runs. Exact windows, not sketches: tests on
sketches are unstable (whylogs #684).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift.codec import decode_array, encode_array
from driftscope_llm.services.drift.settings import SignalKind

__all__ = ["EmbeddingItem", "SignalWindow"]

EmbeddingItem = tuple[npt.NDArray[np.float64], int]
"""An embedding in a window: its whitened reference coordinates and its topic cluster."""


class SignalWindow:
    """Last ``capacity`` values of a signal (floats; booleans as 0.0/1.0; category strings;
    :data:`EmbeddingItem` for embeddings), their event ids and stream event indices."""

    __slots__ = ("_head", "_ids", "_idx", "_size", "_vals", "capacity", "kind", "new_since_test")

    def __init__(self, kind: SignalKind, capacity: int) -> None:
        self.kind = kind
        self.capacity = capacity
        self._vals: list[Any] = [None] * capacity
        self._ids: list[str] = [""] * capacity
        self._idx: list[int] = [0] * capacity
        self._head = 0
        self._size = 0
        self.new_since_test = 0

    def __len__(self) -> int:
        return self._size

    def append(self, value: Any, event_id: str, index: int) -> None:
        h = self._head
        self._vals[h] = value
        self._ids[h] = event_id
        self._idx[h] = index
        self._head = h + 1 if h + 1 < self.capacity else 0
        if self._size < self.capacity:
            self._size += 1
        self.new_since_test += 1

    def _ordered(self, items: list[Any]) -> list[Any]:
        if self._size < self.capacity:
            return items[: self._size]
        return items[self._head :] + items[: self._head]

    def values(self) -> list[Any]:
        """Values, oldest first."""
        return self._ordered(self._vals)

    def ids(self) -> list[str]:
        return self._ordered(self._ids)

    def indices(self) -> list[int]:
        return self._ordered(self._idx)

    def floats(self) -> npt.NDArray[np.float64]:
        """Continuous/boolean windows as a float64 array, oldest first."""
        return np.asarray(self.values(), dtype=np.float64)

    def clear(self) -> None:
        self._vals = [None] * self.capacity
        self._ids = [""] * self.capacity
        self._idx = [0] * self.capacity
        self._head = self._size = self.new_since_test = 0

    def state_dict(self) -> dict[str, Any]:
        vals = self.values()
        d: dict[str, Any] = {"capacity": self.capacity, "ids": self.ids(),
                             "indices": encode_array(np.asarray(self.indices(), dtype=np.int64)),
                             "new_since_test": self.new_since_test}
        if self.kind is SignalKind.CATEGORICAL:
            d["values"] = vals
        elif self.kind is SignalKind.EMBEDDING:
            dim = vals[0][0].size if vals else 0
            d["projections"] = encode_array(np.stack([v[0] for v in vals]) if vals
                                            else np.zeros((0, dim)))
            d["clusters"] = encode_array(np.asarray([v[1] for v in vals], dtype=np.int64))
        else:
            d["values"] = encode_array(np.asarray(vals, dtype=np.float64))
        return d

    @classmethod
    def from_state(cls, kind: SignalKind, d: dict[str, Any]) -> SignalWindow:
        w = cls(kind, int(d["capacity"]))
        ids = [str(x) for x in d["ids"]]
        idx = [int(x) for x in decode_array(d["indices"])]
        vals: list[Any]
        if kind is SignalKind.CATEGORICAL:
            vals = [str(x) for x in d["values"]]
        elif kind is SignalKind.EMBEDDING:
            proj = decode_array(d["projections"])
            clusters = decode_array(d["clusters"])
            vals = [(proj[i].copy(), int(clusters[i])) for i in range(len(ids))]
        else:
            vals = [float(x) for x in decode_array(d["values"])]
        for v, e, i in zip(vals, ids, idx, strict=True):
            w.append(v, e, i)
        w.new_since_test = int(d["new_since_test"])
        return w
