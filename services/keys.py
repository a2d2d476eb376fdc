"""Composite keys that cannot collide: stream ids, dedup keys, Redis key names.

Joining fields with a separator is ambiguous as soon as a field may contain the separator:
``"a|b" + "c"`` and ``"a" + "b|c"`` both give ``a|b|c``, so two streams would share one monitor,
one dedup key and one reference. Every composite key in driftscope is built here instead, by
:func:`join_key`: each part is percent-encoded for ``%`` and the separator (and, with
``reserved``, any other character the key's consumer treats specially, such as Redis ``SCAN``'s
glob characters), then the parts are joined. Because no encoded part contains the separator, the
parts are recovered exactly by :func:`split_key`, so two different tuples never give one key.

Compatibility: a part without ``%``, the separator or a reserved character is unchanged, so keys
of ordinary names (``support-bot``, ``v2``, ``route=billing``) are the same bytes as before this
module existed and existing checkpoints, references and incidents keep working. Only names that
contained a separator or ``%`` get new keys: their streams start a new reference and their
incidents a new dedup chain (docs/collector.md, "Robustness").
"""

from __future__ import annotations

__all__ = ["REDIS_RESERVED", "encode_part", "join_key", "split_key"]

REDIS_RESERVED = "*?[]\\"
"""Glob characters of Redis ``SCAN MATCH``/``KEYS``: encoded in Redis key parts so a pattern
built from a prefix can never match into another key."""


def encode_part(part: str, sep: str, reserved: str = "") -> str:
    """``part`` with ``%``, ``sep`` and every character of ``reserved`` as ``%XX`` escapes
    (``%{ord:02X}``; code points above 0xFF as ``%u{ord:04X}``)."""
    if "%" not in part and sep not in part and not any(c in part for c in reserved):
        return part
    special = {"%", *sep, *reserved}
    return "".join(_escape(c) if c in special else c for c in part)


def _escape(c: str) -> str:
    code = ord(c)
    return f"%{code:02X}" if code < 0x100 else f"%u{code:04X}"


def join_key(*parts: str, sep: str = "|", reserved: str = "") -> str:
    """One key for ``parts``; different tuples of parts always give different keys."""
    if not sep:
        raise ValueError("join_key needs a non-empty separator")
    return sep.join(encode_part(p, sep, reserved) for p in parts)


def split_key(key: str, sep: str = "|") -> list[str]:
    """The parts :func:`join_key` joined (inverse of it, whatever ``reserved`` was)."""
    return [_decode(p) for p in key.split(sep)]


def _decode(part: str) -> str:
    if "%" not in part:
        return part
    out: list[str] = []
    i = 0
    while i < len(part):
        c = part[i]
        if c != "%":
            out.append(c)
            i += 1
        elif part.startswith("%u", i):
            out.append(chr(int(part[i + 2:i + 6], 16)))
            i += 6
        else:
            out.append(chr(int(part[i + 1:i + 3], 16)))
            i += 3
    return "".join(out)
