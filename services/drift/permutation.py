"""Permutation confirmation of window tests whose null law is only asymptotic.

Before a Wasserstein, PSI or embedding-projection alarm is raised, the window and the reference
are pooled and split at random ``B`` times (``DriftSettings.permutations``); the permutation
p-value counts the observed split, ``(1 + #{T* ≥ T}) / (1 + B)``, so it is exact under no drift
whatever the data (window and held-out reference are exchangeable then). The alarm stands only if
that p-value is at most ``max(α, 1/(1 + B))``. The analytic level does the fine work at tiny
``α``; the permutation guards it against a wrong asymptotic law. It runs only when the analytic
test already rejects, so its cost (``B × (w + n)``, vectorised) is paid per alarm, not per event.

Random splits come from ``numpy.random.default_rng([seed, event_index])``: a restored monitor
draws the same splits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift.calibration import permutation_pvalue

__all__ = ["confirm", "level", "random_masks"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_CHUNK = 128


def random_masks(n_pooled: int, n_window: int, count: int,
                 rng: np.random.Generator) -> BoolArray:
    """``count`` rows, each marking a uniformly random subset of ``n_window`` pooled items."""
    keys = rng.random((count, n_pooled))
    chosen = np.argpartition(keys, n_window - 1, axis=1)[:, :n_window]
    out: BoolArray = np.zeros((count, n_pooled), dtype=bool)
    np.put_along_axis(out, chosen, True, axis=1)
    return out


def confirm(
    observed: float, batch_stat: Callable[[BoolArray], FloatArray], n_pooled: int,
    n_window: int, permutations: int, alpha: float, seed: int, index: int,
) -> float:
    """Permutation p-value of ``observed``; ``batch_stat`` maps window masks to statistics.

    The caller raises only if the result is ``≤ max(alpha, 1/(1 + permutations))``.
    """
    rng = np.random.default_rng([seed & 0xFFFFFFFF, index & 0xFFFFFFFF])
    stats: list[FloatArray] = []
    done = 0
    while done < permutations:
        b = min(_CHUNK, permutations - done)
        stats.append(batch_stat(random_masks(n_pooled, n_window, b, rng)))
        done += b
    return permutation_pvalue(observed, np.concatenate(stats))


def level(alpha: float, permutations: int) -> float:
    """The permutation p-value an alarm needs."""
    return max(alpha, 1.0 / (1.0 + permutations))
