"""Human tables at any terminal width (``services.cli.render.print_table``).

Invariants, at every width from 40 to 400 columns and with ``--wide``: a key cell (an id, a
model, a signal, a headline) appears whole on one line of the output, never cut or wrapped;
every other cell appears somewhere (whitespace normalised: it may wrap); no line is wider than
the console unless a key cell alone is; outside text stays literal. A table that fits is one
line per row; ``--wide`` always fits. The consoles are built here with their own width, never
the machine's ``COLUMNS``. The commands' real outputs are checked in
``tests/integration/test_cli_human_output*.py``.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from rich.console import Console

from driftscope_llm.services.cli.render import (
    INCIDENT_COLUMNS,
    WIDE_WIDTH,
    Column,
    escape_text,
    incident_row,
    print_table,
)
from driftscope_llm.services.store import Incident

COLUMNS = (Column("id", key=True), Column("state"), Column("opened"),
           Column("model@version", key=True), Column("headline", key=True),
           Column("facets", justify="right"), Column("top example"))
ROWS = [
    ["inc-3fa0c1d2e3f4a5b6", "attributed", "2026-03-01T09:00:00+00:00", "support-bot@v2",
     "refusal on route=billing (page_hinkley)", "5", "billing-refusal-03"],
    ["inc-9fa0c1d2e3f4a5b6", "open", "2026-03-01T10:00:00+00:00",
     "support-bot-with-a-long-name@v2025-11-03-rc1", "logprob_mean on all (ks)", "1", ""],
    ["inc-000", "open", "2026-03-01T11:00:00+00:00", "[red]bot[/red]@v1",
     "length_chars on route=account (cusum)", "12", "x"],
]


def render(width: int, rows: list[list[str]] = ROWS) -> str:
    out = io.StringIO()
    con = Console(file=out, width=width, color_system=None, highlight=False)
    print_table(con, f"{len(rows)} incidents", COLUMNS,
                [[escape_text(c) for c in row] for row in rows])
    return out.getvalue()


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120, 160, 200, 400, WIDE_WIDTH])
def test_key_cells_are_whole_on_one_line_and_nothing_is_lost(width: int) -> None:
    text = render(width)
    lines = text.splitlines()
    for row in ROWS:
        for col, cell in zip(COLUMNS, row, strict=True):
            if col.key:
                assert any(cell in line for line in lines), (width, cell, text)
            else:
                assert flat(cell) in flat(text), (width, cell, text)
    longest_key = max(len(c) for row in ROWS for col, c in zip(COLUMNS, row, strict=True)
                      if col.key)
    assert max(len(line) for line in lines) <= max(width, longest_key), text


def test_a_table_that_fits_is_one_line_per_row() -> None:
    for width in (200, WIDE_WIDTH):
        lines = render(width).splitlines()
        body = [line for line in lines if line.startswith("│")]
        assert len(body) == len(ROWS)
        for line, row in zip(body, ROWS, strict=True):
            cells = [c.strip() for c in line.strip("│").split("│")]
            assert cells == row


def records(text: str) -> list[tuple[str, str]]:
    """(key lines, detail lines) of each record, whitespace normalised; the title dropped."""
    out: list[tuple[list[str], list[str]]] = []
    for line in text.splitlines()[1:]:
        if line.startswith("    "):
            out[-1][1].append(line)
        elif out and not out[-1][1]:  # a key line packed onto a second line
            out[-1][0].append(line)
        else:
            out.append(([line], []))
    return [(flat(" ".join(k)), flat(" ".join(d))) for k, d in out]


def test_too_narrow_for_the_table_gives_one_record_per_row() -> None:
    text = render(80)
    assert "│" not in text
    assert text.splitlines()[0] == ("3 incidents (id · model@version · headline; --wide for the "
                                    "table)")
    assert records(text) == [
        ("inc-3fa0c1d2e3f4a5b6 support-bot@v2 refusal on route=billing (page_hinkley)",
         "state attributed · opened 2026-03-01T09:00:00+00:00 · facets 5 · top example "
         "billing-refusal-03"),
        # an empty cell is left out, not shown as a name with nothing after it
        ("inc-9fa0c1d2e3f4a5b6 support-bot-with-a-long-name@v2025-11-03-rc1 logprob_mean on "
         "all (ks)", "state open · opened 2026-03-01T10:00:00+00:00 · facets 1"),
        ("inc-000 [red]bot[/red]@v1 length_chars on route=account (cusum)",
         "state open · opened 2026-03-01T11:00:00+00:00 · facets 12 · top example x")]


def test_outside_text_stays_literal_in_both_layouts() -> None:
    for width in (80, 400):
        text = render(width)
        assert "[red]bot[/red]@v1" in text


def test_no_rows_prints_the_title_alone() -> None:
    assert render(80, []) == "0 incidents\n"


def test_a_key_cell_wider_than_the_terminal_is_kept_whole_on_its_own_line() -> None:
    model = "m" * 70 + "@v1"
    rows = [["inc-1", "open", "2026-03-01T09:00:00+00:00", model, "refusal on all (cusum)", "1",
             ""]]
    lines = render(40, rows).splitlines()
    assert model in lines
    assert all(len(line) <= 40 for line in lines if line != model)


def test_incident_row_reads_the_typed_incident() -> None:
    t = datetime(2026, 3, 1, tzinfo=UTC)
    inc = Incident(id="inc-1", opened_at=t, updated_at=t, model="bot", model_version="v2",
                   segment="route=billing", signal="refusal", detector="cusum", statistic=9.0,
                   threshold=4.0, effect_size=0.25, event_id="e-1", severity="warning")
    row = incident_row(inc)
    assert [c.name for c in INCIDENT_COLUMNS] == ["incident", "model@version", "severity",
                                                  "headline", "effect", "x minimum", "facets"]
    assert row == ["inc-1", "bot@v2", "warning", "refusal on route=billing (cusum)", "0.25", "",
                   "0"]
