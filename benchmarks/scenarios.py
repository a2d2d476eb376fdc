"""Synthetic LLM output streams with known change points, for the drift benchmark and tests.

Every event carries all the collector's signals, driven by a latent per-event "quality"
``z ~ N(0, 1)``:

* ``logprob_mean = -0.45 + 0.12 z`` (so a shift of ``z`` by -1 moves the mean token logprob by one
  standard deviation of its per-event value), ``logprob_min``, ``low_logprob_share``,
  ``entropy_mean`` and ``confidence`` move with ``z`` plus their own noise;
* ``length_tokens`` is log-normal (median ~150), ``length_chars`` ~4.3 characters per token,
  ``latency_ms`` grows with length and has a heavy right tail;
* ``refusal`` is Bernoulli (2 % by default), ``finish_reason`` is ``stop``/``length``/
  ``content_filter``;
* ``embedding`` (on a ``embed_rate`` share of events, else ``None``) is a 384-d unit vector near
  one of eight topic centres, drawn from a topic mixture.

A :class:`Change` starts at event ``at`` of a stream and reaches its full ``size`` after ``ramp``
events (0 = abrupt).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift import Observation

__all__ = ["CHANGE_SIGNALS", "Change", "World", "generate", "make_world"]

CHANGE_SIGNALS: dict[str, frozenset[str]] = {
    "confidence": frozenset({"logprob_mean", "logprob_min", "low_logprob_share", "entropy_mean",
                             "confidence"}),
    "refusal": frozenset({"refusal"}),
    "length": frozenset({"length_tokens", "length_chars", "latency_ms"}),
    "topic": frozenset({"embedding"}),
    "new_topic": frozenset({"embedding"}),
}
"""Which signals a change of each kind moves (alarms there count as detections)."""


@dataclass(frozen=True)
class World:
    """Fixed parts of the generator: topic centres and base topic mixture."""

    centers: npt.NDArray[np.float64]
    topic_probs: npt.NDArray[np.float64]

    @property
    def dim(self) -> int:
        return int(self.centers.shape[1])


def make_world(seed: int = 0, dim: int = 384, topics: int = 8) -> World:
    """``topics`` topic centres (unit vectors) and one more, the last row of ``centers``, that
    only a ``new_topic`` change ever draws from."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(topics + 1, dim))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return World(c, np.full(topics, 1.0 / topics))


@dataclass(frozen=True)
class Change:
    """``kind`` in CHANGE_SIGNALS; ``size``: confidence: shift of ``z`` (negative = drop);
    refusal: the new rate; length: the length factor; topic: the new share of topic 0;
    new_topic: the share of outputs drawn from a topic the reference never saw."""

    kind: str
    at: int
    size: float
    ramp: int = 0

    def fraction(self, n: int) -> npt.NDArray[np.float64]:
        t = np.arange(n, dtype=np.float64)
        if self.ramp <= 0:
            return (t >= self.at).astype(np.float64)
        return np.clip((t - self.at + 1) / self.ramp, 0.0, 1.0)


def _topic_probs(world: World, size: float, frac: float) -> npt.NDArray[np.float64]:
    base = world.topic_probs
    moved = base * (1 - size) / (1 - base[0])
    moved[0] = size
    p = (1 - frac) * base + frac * moved
    out: npt.NDArray[np.float64] = p / p.sum()
    return out


def generate(world: World, n: int, seed: int, change: Change | None = None, *,
             refusal_rate: float = 0.02, embed_rate: float = 0.25,
             prefix: str = "e") -> list[Observation]:
    """``n`` events of one stream; event ids are ``f"{prefix}{i}"``, ``ts`` is ``i`` seconds."""
    rng = np.random.default_rng(seed)
    frac = np.zeros(n) if change is None else change.fraction(n)
    kind = None if change is None else change.kind
    size = 0.0 if change is None else change.size
    z = rng.normal(size=n) + (size * frac if kind == "confidence" else 0.0)
    e = rng.normal(size=(6, n))
    log_factor = np.log(size) * frac if kind == "length" else np.zeros(n)
    tokens = np.maximum(1.0, np.round(np.exp(5.0 + 0.5 * e[4] + log_factor)))
    chars = np.round(tokens * np.exp(1.45 + 0.1 * e[5]))
    latency = 120.0 + tokens * np.exp(2.3 + 0.3 * rng.normal(size=n))
    rate = refusal_rate + (size - refusal_rate) * frac if kind == "refusal" else np.full(
        n, refusal_rate)
    refusal = rng.random(n) < rate
    u = rng.random(n)
    finish = np.where(u < 0.04, "length", np.where(u < 0.05, "content_filter", "stop"))
    embed = rng.random(n) < embed_rate
    cols = {
        "logprob_mean": -0.45 + 0.12 * z,
        "logprob_min": -2.2 + 0.4 * z + 0.5 * e[0],
        "low_logprob_share": np.clip(0.06 - 0.03 * z + 0.02 * e[1], 0.0, 1.0),
        "entropy_mean": np.maximum(0.0, 0.9 - 0.15 * z + 0.08 * e[2]),
        "confidence": 1.0 / (1.0 + np.exp(-(1.5 + 0.7 * z + 0.3 * e[3]))),
        "length_tokens": tokens,
        "length_chars": chars,
        "latency_ms": latency,
    }
    lists = {k: v.tolist() for k, v in cols.items()}
    refusal_l, finish_l = refusal.tolist(), finish.tolist()
    out: list[Observation] = []
    for i in range(n):
        values: dict[str, object] = {k: lists[k][i] for k in lists}
        values["refusal"] = refusal_l[i]
        values["finish_reason"] = finish_l[i]
        values["embedding"] = None
        if embed[i]:
            probs = (_topic_probs(world, size, float(frac[i])) if kind == "topic"
                     else world.topic_probs)
            topic = rng.choice(probs.size, p=probs)
            if kind == "new_topic" and rng.random() < size * float(frac[i]):
                topic = world.centers.shape[0] - 1
            v = 0.55 * world.centers[topic] + rng.normal(size=world.dim) * (0.85 / np.sqrt(
                world.dim))
            values["embedding"] = (v / np.linalg.norm(v)).astype(np.float32)
        out.append(Observation(f"{prefix}{i}", float(i), values))  # type: ignore[arg-type]
    return out
