"""The one helper for showing text from outside (``driftscope_llm.services.textsafety``): no
control character
and no rich markup survives, and nothing else about the text changes."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from driftscope_llm.services.textsafety import html_text, terminal, visible

HOSTILE = "bot\x1b]0;pwned\x07\x1b[2J\u202eevil[bold red]x[/] [link=http://e.vil]y[/link]\x9b1m"


def _render(markup: str, width: int = 80) -> str:
    """What rich writes to a real (colour) terminal for ``markup``."""
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=True, color_system="truecolor",
            legacy_windows=False).print(markup, highlight=False, soft_wrap=True)
    return out.getvalue()


def _controls(text: str) -> set[str]:
    return {c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f
            or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"}


def test_hostile_name_reaches_the_terminal_as_visible_text() -> None:
    shown = _render(terminal(HOSTILE))
    assert "\x1b]" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "\x1b" not in shown  # rich adds no styling for plain text either
    assert shown.rstrip("\n") == visible(HOSTILE)  # markup shown literally, not interpreted
    assert "\\x1b]0;pwned\\x07" in shown and "\\u202e" in shown and "[bold red]" in shown


def test_visible_escapes_exactly_the_control_characters() -> None:
    assert visible("a\tb\nc\rd\x00e\x7ff\x85g\u2028h\u2066i") == \
        "a\\tb\\nc\\rd\\x00e\\x7ff\\x85g\\u2028h\\u2066i"
    assert visible("line one\nline two", keep_newlines=True) == "line one\nline two"
    plain = "naïve café — 東京 🙂 [brackets] <tags> & 'quotes'"
    assert visible(plain) == plain


def test_lone_surrogates_are_escaped_not_raised_on() -> None:
    assert visible("x\ud800y") == "x\\ud800y"


def test_html_text_escapes_markup_and_controls() -> None:
    assert html_text('<script>"x"</script>\x1b[2J\x07') == \
        "&lt;script&gt;&quot;x&quot;&lt;/script&gt;\\x1b[2J\\x07"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(
    list("\x1b\x07\x9b\u202e[]/\\")), max_size=60))
def test_no_control_character_or_markup_survives_any_text(text: str) -> None:
    shown = _render(terminal(text), width=40)
    assert not _controls(shown.replace("\n", ""))
    expected = "".join(visible(text).split("\n"))
    if expected.endswith("\\"):  # rich's escape doubles a trailing backslash, so that markup
        expected += "\\"          # appended after the text cannot be escaped by it
    assert "".join(shown.split("\n")) == expected


@pytest.mark.parametrize("width", [10, 21, 80])
def test_cutting_escaped_text_cannot_leave_half_a_sequence(width: int) -> None:
    shown = _render(terminal(HOSTILE)[:width], width=200)
    assert not _controls(shown.replace("\n", ""))
