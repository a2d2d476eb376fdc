"""Text from outside, made safe to show: terminals (rich) and HTML pages.

Model names, outputs, prompts, segment labels and exemplar texts arrive from the monitored
traffic, so a producer chooses every byte of them. Printed raw, ``\\x1b]0;title\\x07`` retitles
the on-call engineer's terminal, ``\\x1b[2J`` clears it, a right-to-left override (U+202E)
reverses what follows, and ``[link=…]`` or ``[/]`` is rich markup. Everything user-originated
goes through one of these functions before it is shown:

* :func:`visible` — control characters become visible escapes (``\\x1b``, ``\\u202e``; tab,
  newline and carriage return as ``\\t``, ``\\n``, ``\\r``), nothing else changes. Use it for
  plain-text output and inside :class:`rich.text.Text`.
* :func:`terminal` — :func:`visible`, then rich markup escaped: for strings that rich will parse
  as markup (``console.print``, table cells given as ``str``).
* :func:`html_text` — :func:`visible`, then HTML-escaped: for report pages.

What counts as a control character: C0 (U+0000–U+001F) and DEL, C1 (U+0080–U+009F, which some
terminals read as ESC-sequences of their own), the bidirectional embeddings, overrides and
isolates (U+202A–U+202E, U+2066–U+2069) and marks (U+200E, U+200F, U+061C), line and paragraph
separators (U+2028, U+2029), and lone surrogates. Tab and newline are escaped too unless
``keep_newlines`` asks to keep newlines (multi-line outputs shown as blocks). The escapes are
reversible by eye and the text keeps its length order, so truncating *after* escaping can never
leave half a control sequence on a terminal.
"""

from __future__ import annotations

import html
import re

from rich.markup import escape as _escape_markup

__all__ = ["html_text", "terminal", "visible"]

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_BIDI}\\u2028\\u2029\\ud800-\\udfff]")
_CONTROL_KEEP_NL = re.compile(f"[\\x00-\\x09\\x0b-\\x1f\\x7f-\\x9f{_BIDI}\\u2028\\u2029"
                              "\\ud800-\\udfff]")


_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character (module docstring) as a visible escape."""
    pattern = _CONTROL_KEEP_NL if keep_newlines else _CONTROL
    return pattern.sub(_escape_one, text)


def terminal(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` safe for rich markup: control characters escaped, then markup escaped.

    Safe to concatenate with markup of your own (``f"[bold]{terminal(name)}[/bold]"``): a
    trailing backslash is doubled (rich's rule), so it cannot escape the tag that follows.
    """
    return _escape_markup(visible(text, keep_newlines=keep_newlines))


def html_text(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` safe inside HTML elements and quoted attributes: controls, then HTML escaped."""
    return html.escape(visible(text, keep_newlines=keep_newlines), quote=True)
