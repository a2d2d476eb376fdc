"""Redaction of personal data and credentials from production text, before it is stored or sent.

driftscope keeps a few production prompts and outputs as *exemplars* of a drifted window: they go
into collector checkpoints and incident records in Redis, into webhook payloads (when an endpoint
asks for text) and become the attribution worker's queries. Every such text passes through a
:class:`Redactor` first, in the collector, so nothing downstream ever sees the raw text.

Built-in detectors (each can be switched off by name in :class:`RedactionSettings`):

================  ===============================================================================
``email``         e-mail addresses
``card``          payment-card numbers: 13-19 digits, optionally grouped by spaces or dashes, that
                  pass the Luhn checksum (ISO/IEC 7812-1, mod-10); digit runs that fail it (order
                  numbers, ids) are left alone
``phone``         phone numbers: ``+`` and 8-15 digits (E.164), or grouped national forms such as
                  ``(415) 555-0123``, ``415-555-0123``, ``+44 20 7946 0958``
``api_key``       vendor tokens with a recognisable prefix: ``sk-``/``sk-proj-`` (OpenAI,
                  Anthropic), ``sk_live_``/``pk_test_``… (Stripe), ``AKIA``/``ASIA`` (AWS access key
                  ids), ``ghp_``/``gho_``/``ghs_``/``github_pat_`` (GitHub), ``xox?-`` (Slack),
                  ``AIza`` (Google), JSON Web Tokens (``eyJ….….…``), PEM private-key blocks
``bearer``        ``Bearer <token>`` and ``Basic <credentials>`` as in an Authorization header
``credential``    ``password=…``, ``api_key: …``, ``secret=…``, ``token=…`` assignments (the value)
``secret_hex``    hexadecimal runs of 32 characters or more (keys, HMAC secrets; also hashes —
                  over-redacting a hash is the safe mistake)
``secret_b64``    base64/base64url runs of 32 characters or more that mix upper case, lower case
                  and digits and have a per-character Shannon entropy of at least 3.8 bits (random
                  keys reach about 4.5; identifiers and URL paths rarely pass)
================  ===============================================================================

All built-ins are one alternation scanned once, left to right, so the first detector in the
table above that matches at a position wins (a grouped card number is a card, not a phone).
User-defined patterns (:class:`RedactionPattern`) run afterwards, in order. A match is replaced by
``[REDACTED:<name>]``; redaction is idempotent (redacting redacted text changes nothing).

Redaction is a safety net, not a guarantee: free-form personal data (names, addresses) is not
detected. When exemplar text is not needed at all, configure webhook endpoints without
``include_text``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

from pydantic import BaseModel, Field, field_validator

__all__ = [
    "BUILTIN_DETECTORS",
    "Finding",
    "RedactionPattern",
    "RedactionSettings",
    "Redactor",
    "luhn_valid",
]


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod-10) checksum of a digit string: double every second digit from the right,
    subtract 9 from doubles over 9, and the sum must be divisible by 10."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _entropy(text: str) -> float:
    """Shannon entropy of the character distribution, in bits per character."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def _card_ok(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


def _wordlike(segment: str) -> bool:
    """A path segment a person named (``api``, ``v1``, ``Models``, ``step-1200``, ``myFile``):
    no base64-only characters and at most two case changes; random base64 flips case about
    every other character."""
    flips = sum(a.isalpha() and b.isalpha() and a.isupper() != b.isupper()
                for a, b in pairwise(segment))
    return bool(_PATH_SEGMENT.fullmatch(segment)) and flips <= 2


def _pathlike(body: str) -> bool:
    """A URL or file path: a slash every few characters *and* mostly word-like segments. Random
    base64 has a slash about once in 64 characters, but its segments are not words, so a dense
    run of slashes alone does not make it a path."""
    if body.count("/") * 16 <= len(body):
        return False
    segments = [s for s in body.split("/") if s]
    return 2 * sum(1 for s in segments if _wordlike(s)) >= len(segments)


def _b64_ok(text: str) -> bool:
    body = text.rstrip("=")
    return (any(c.isdigit() for c in body) and any(c.isupper() for c in body)
            and any(c.islower() for c in body) and not _pathlike(body)
            and _entropy(body) >= 3.8)


_KEY_PREFIXES = ("sk-", "sk_", "pk_", "rk_", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
                 "github_pat_", "xox", "AIza",
                 "eyJ", "-----BEGIN")
_CREDENTIAL_WORDS = ("password", "passwd", "pwd", "secret", "key", "token")
# character-class runs that every card / phone match lies inside (a superset test, ~30 ns/char)
_CARD_RUN = re.compile(r"[0-9][0-9 -]{11,36}[0-9]")
_PHONE_RUN = re.compile(r"[+(0-9][0-9 ().+-]{7,}")


def _credential_gate(low: str) -> bool:
    """A credential word followed (after quotes/blanks) by ``:`` or ``=`` in lower-cased text."""
    for word in _CREDENTIAL_WORDS:
        at = low.find(word)
        while at >= 0:
            rest = low[at + len(word): at + len(word) + 32].lstrip("\"' \t")
            if rest[:1] in (":", "=") and rest[:1]:
                return True
            at = low.find(word, at + 1)
    return False


def _possible(text: str) -> set[str]:
    """Detectors that can match ``text`` at all: each test is a superset of its pattern. Most
    production text trips none, and a full regex scan costs ~100-400 ns per character."""
    found = set()
    if "@" in text:
        found.add("email")
    if _CARD_RUN.search(text) is not None:
        found.add("card")
    if _PHONE_RUN.search(text) is not None:
        found.add("phone")
    if any(p in text for p in _KEY_PREFIXES):
        found.add("api_key")
    low = text.lower()
    if "bearer" in low or "basic" in low:
        found.add("bearer")
    if _credential_gate(low):
        found.add("credential")
    if max(map(len, text.split()), default=0) >= 32:
        found.update(("secret_hex", "secret_b64"))
    return found

# (name, regex, validator). Order matters: earlier detectors win at the same position.
_BUILTINS: tuple[tuple[str, str, Callable[[str], bool] | None], ...] = (
    ("email", r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", None),
    ("card", r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])", _card_ok),
    ("api_key",
     r"-----BEGIN[A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]*PRIVATE KEY-----|\Z)"
     r"|(?<![A-Za-z0-9])(?:"
     r"sk-[A-Za-z0-9_-]{20,}"
     r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
     r"|(?:AKIA|ASIA)[A-Z0-9]{16}"
     r"|gh[pousr]_[A-Za-z0-9]{30,}"
     r"|github_pat_[A-Za-z0-9_]{22,}"
     r"|xox[abposr]-[A-Za-z0-9-]{10,}"
     r"|AIza[0-9A-Za-z_-]{35}"
     r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
     r")", None),
    ("bearer", r"(?i:\b(?:bearer|basic))[ \t]+[A-Za-z0-9._~+/-]{8,}=*", None),
    ("credential",
     r"(?i:\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|token))"
     r"[\"']?[ \t]*[:=][ \t]*[\"']?[^\s\"',;]{4,}", None),
    ("phone",
     r"(?<![\w+])(?:\+\d{8,15}"
     r"|(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4})(?![\w])", None),
    ("secret_hex", r"(?<![A-Za-z0-9])[0-9a-fA-F]{32,}(?![A-Za-z0-9])", None),
    ("secret_b64", r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}(?![A-Za-z0-9+/=_-])",
     _b64_ok),
)

BUILTIN_DETECTORS: tuple[str, ...] = tuple(name for name, _, _ in _BUILTINS)


class RedactionPattern(BaseModel):
    """A user-defined pattern: every match of ``regex`` becomes ``[REDACTED:<name>]``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    regex: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return v


class RedactionSettings(BaseModel):
    """Which detectors run on exemplar prompts and outputs (see the module docstring)."""

    enabled: bool = Field(default=True, description="Off only for synthetic data.")
    disabled: list[str] = Field(default_factory=list,
                                description="Built-in detectors to switch off, by name.")
    patterns: list[RedactionPattern] = Field(default_factory=list,
                                             description="Extra patterns, applied after.")

    @field_validator("disabled")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(BUILTIN_DETECTORS))
        if unknown:
            raise ValueError(f"unknown detectors {unknown}; known: {list(BUILTIN_DETECTORS)}")
        return v


@dataclass(frozen=True)
class Finding:
    """One redacted span of the *original* text: detector name and [start, end)."""

    name: str
    start: int
    end: int


class Redactor:
    """Replace personal data and credentials in text by ``[REDACTED:<name>]`` markers.

    Pure and thread-safe; build once per process (patterns are compiled here).
    """

    def __init__(self, settings: RedactionSettings | None = None) -> None:
        self.settings = settings or RedactionSettings()
        active = [b for b in _BUILTINS if b[0] not in set(self.settings.disabled)]
        self._validators = {name: check for name, _, check in active}
        self._active = active
        self._compiled: dict[tuple[str, ...], re.Pattern[str]] = {}
        self._extra = [(p.name, re.compile(p.regex)) for p in self.settings.patterns]

    def _replace(self, m: re.Match[str]) -> str:
        name = m.lastgroup or "secret"
        check = self._validators.get(name)
        if check is not None and not check(m.group()):
            return m.group()
        return f"[REDACTED:{name}]"

    def _scanner(self, text: str) -> re.Pattern[str] | None:
        """One alternation of the detectors whose gate passes on ``text`` (None: none can)."""
        possible = _possible(text)
        names = tuple(name for name, _, _ in self._active if name in possible)
        if not names:
            return None
        rx = self._compiled.get(names)
        if rx is None:
            rx = re.compile("|".join(f"(?P<{name}>{pat})" for name, pat, _ in self._active
                                     if name in names))
            self._compiled[names] = rx
        return rx

    def redact(self, text: str) -> str:
        """``text`` with every detected span replaced."""
        if not self.settings.enabled:
            return text
        scanner = self._scanner(text)
        if scanner is not None:
            text = scanner.sub(self._replace, text)
        for name, rx in self._extra:
            text = rx.sub(f"[REDACTED:{name}]", text)
        return text

    def redact_optional(self, text: str | None) -> str | None:
        return None if text is None else self.redact(text)

    def findings(self, text: str) -> list[Finding]:
        """What the built-in detectors would redact in ``text`` (for reports and tests)."""
        scanner = self._scanner(text) if self.settings.enabled else None
        if scanner is None:
            return []
        out = []
        for m in scanner.finditer(text):
            name = m.lastgroup or "secret"
            check = self._validators.get(name)
            if check is None or check(m.group()):
                out.append(Finding(name, m.start(), m.end()))
        return out
