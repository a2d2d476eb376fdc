"""Bit-exact JSON encoding of numpy arrays and floats for detector state.

Arrays travel as ``{"dtype": ..., "shape": [...], "b64": ...}`` (raw little-endian bytes), so a
restored array is identical bit for bit. Python floats survive ``json`` unchanged (``repr``
round-trips), except non-finite ones, which :func:`encode_float` spells as strings.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.errors import StateMismatchError

__all__ = ["decode_array", "decode_float", "encode_array", "encode_float"]

_DTYPES = {"float64": "<f8", "float32": "<f4", "int64": "<i8", "int32": "<i4"}


def encode_array(a: npt.NDArray[Any]) -> dict[str, Any]:
    """Encode a float64/float32/int64/int32 array."""
    name = str(a.dtype)
    if name not in _DTYPES:
        raise TypeError(f"cannot encode arrays of dtype {name}")
    data = np.ascontiguousarray(a, dtype=_DTYPES[name]).tobytes()
    return {"dtype": name, "shape": list(a.shape), "b64": base64.b64encode(data).decode("ascii")}


def decode_array(d: dict[str, Any]) -> npt.NDArray[Any]:
    """Inverse of :func:`encode_array`; a malformed record raises StateMismatchError."""
    try:
        name = str(d["dtype"])
        raw = base64.b64decode(d["b64"])
        a = np.frombuffer(raw, dtype=_DTYPES[name]).astype(name)
        return a.reshape([int(x) for x in d["shape"]])
    except (KeyError, ValueError, TypeError) as exc:
        raise StateMismatchError(f"malformed array in saved state: {exc}") from exc


def encode_float(x: float) -> float | str:
    """A float as JSON: itself when finite, else ``"nan"``/``"inf"``/``"-inf"``."""
    return x if math.isfinite(x) else repr(x)


def decode_float(x: float | str) -> float:
    return float(x)
