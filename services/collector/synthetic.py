"""Synthetic OutputEvent streams with known change points, for tests, benchmarks and smoke runs.

Not a model: per-event signals are drawn from simple distributions (per-token logprobs around a
route-specific mean, refusals at a route-specific rate, lengths around a mean) so that a planted
change is known exactly. The end-to-end tests and the demo use real model generations instead.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

__all__ = ["YEAR_1", "YEAR_9999", "ClockLie", "Drift", "StreamSpec", "generate_events", "rollout"]

ROUTES = ("billing", "shipping", "account", "tech")
_ANSWERS = {
    "billing": (
        "Your invoice for {m} is available under Settings > Billing.",
        "We charged your card on the {d}th; the receipt is in your inbox.",
        "A refund of {n} euros was issued and reaches your account within five days.",
        "You can switch to yearly billing from the plan page and save {n} percent.",
    ),
    "shipping": (
        "Your parcel left our warehouse and should arrive within {d} days.",
        "The courier attempted delivery on the {d}th; you can rebook it online.",
        "Express shipping to your region costs {n} euros and takes two days.",
        "Your order was split into {d} parcels; tracking links are in your email.",
    ),
    "account": (
        "You can reset your password from the sign-in page with the link we email you.",
        "Two-factor authentication is under Security; scan the code with your app.",
        "Your username can be changed once every {d} days from the profile page.",
        "We merged your {d} accounts; sign in with the address you used in {m}.",
    ),
    "tech": (
        "Please restart the app and clear its cache; that fixes most sync problems.",
        "Version {d}.{n} fixes the crash on start; update from the app store.",
        "The export fails on files over {n} megabytes; split the file and retry.",
        "Enable background refresh in the phone settings so notifications arrive.",
    ),
}
_TOPICS = {
    "crypto": (
        "Bitcoin and ether prices swung {n} percent overnight; stake your tokens for yield.",
        "Our new wallet supports {d} blockchains and lets you trade memecoins instantly.",
        "Mint an NFT in {d} clicks and list it on the marketplace for {n} dollars.",
    ),
}
_MONTHS = ("January", "March", "May", "July", "September", "November")
_REFUSAL = "I'm sorry, but I can't help with that request."


@dataclass(frozen=True)
class Drift:
    """From event ``start`` on (in the given ``route``, or all when ``None``), shift the stream."""

    start: int
    route: str | None = None
    logprob_shift: float = 0.0
    refusal_rate: float | None = None
    length_factor: float = 1.0
    topic: str | None = None
    """Replace the answers with another topic's (a semantic shift for the embedding signal)."""


@dataclass(frozen=True)
class StreamSpec:
    n: int
    model: str = "support-bot"
    model_version: str = "v1"
    seed: int = 0
    refusal_rate: float = 0.02
    logprob_mean: float = -0.6
    logprob_sd: float = 0.5
    tokens: int = 24
    drifts: tuple[Drift, ...] = ()
    start: datetime = field(default_factory=lambda: datetime(2026, 11, 28, 9, 0, tzinfo=UTC))
    prefix: str = "ev"


def generate_events(spec: StreamSpec) -> Iterator[dict[str, Any]]:
    """Yield OutputEvent dicts (JSON-ready) one second apart, routes in round-robin order."""
    rng = random.Random(spec.seed)
    for i in range(spec.n):
        route = ROUTES[i % len(ROUTES)]
        shift, refusal, factor, topic = 0.0, spec.refusal_rate, 1.0, None
        for d in spec.drifts:
            if i >= d.start and (d.route is None or d.route == route):
                shift += d.logprob_shift
                refusal = d.refusal_rate if d.refusal_rate is not None else refusal
                factor *= d.length_factor
                topic = d.topic or topic
        refused = rng.random() < refusal
        n_tok = max(2, int(rng.gauss(spec.tokens * factor, 3)))
        mu = spec.logprob_mean + shift + rng.gauss(0.0, spec.logprob_sd)
        lps = [min(0.0, rng.gauss(mu, 0.4)) for _ in range(n_tok)]
        pool = _TOPICS[topic] if topic else _ANSWERS[route]
        answer = rng.choice(pool).format(m=rng.choice(_MONTHS), d=rng.randint(2, 28),
                                         n=rng.randint(5, 90))
        text = _REFUSAL if refused else answer
        if not refused and factor != 1.0:
            text = " ".join([text] * max(1, round(factor)))
        yield {
            "event_id": f"{spec.prefix}-{spec.model_version}-{i:07d}",
            "ts": (spec.start + timedelta(seconds=i)).isoformat(),
            "model": spec.model,
            "model_version": spec.model_version,
            "prompt": f"[{route}] customer question {i}",
            "output": text,
            "segment": {"route": route},
            "token_logprobs": lps,
            "latency_ms": max(1.0, rng.gauss(350.0, 40.0)),
        }


YEAR_1 = "0001-01-01T00:00:00+00:00"
YEAR_9999 = "9999-12-31T23:59:59+00:00"
ClockLie = Literal["v2-year-1", "v1-year-9999"]


def rollout(n_v1: int, n_v2: int, *, lie: ClockLie | None = None, seed: int = 0,
            start: datetime | None = None, refusal_rate: float = 0.3) -> list[dict[str, Any]]:
    """A rollout that changes behaviour from its first event: ``n_v1`` ordinary events of
    ``v1``, then ``n_v2`` of ``v2`` refusing ``refusal_rate`` of the time, one second apart.

    ``lie`` plants one client's claim of time (issue 28): ``"v2-year-1"`` dates v2's first
    event year 1, ``"v1-year-9999"`` dates v1's first event year 9999. Whatever the lie, the
    change must be caught exactly as without it (the collector orders by what it observed).
    """
    t0 = start if start is not None else datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    v1 = list(generate_events(StreamSpec(n=n_v1, model_version="v1", seed=seed, start=t0)))
    v2 = list(generate_events(StreamSpec(n=n_v2, model_version="v2", seed=seed + 1,
                                         refusal_rate=refusal_rate,
                                         start=t0 + timedelta(seconds=n_v1))))
    if lie == "v2-year-1":
        v2[0] = {**v2[0], "ts": YEAR_1}
    elif lie == "v1-year-9999":
        v1[0] = {**v1[0], "ts": YEAR_9999}
    return v1 + v2
