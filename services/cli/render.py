"""How the CLI prints what came from outside, and the attribution report, on a terminal.

Text that came from outside driftscope (model names, segments, outputs, corpus text, ids) goes
through :func:`escape_text` before it reaches rich: markup such as ``[red]`` is shown literally
and control characters (terminal escape sequences, carriage returns) are shown as ``\\x1b``-style
escapes, so a crafted output cannot restyle or rewrite the on-call terminal.

:func:`print_report` is the one human view of an attribution report, shared by ``trace``,
``attribute`` and ``incidents show``.

Every other table goes through :func:`print_table`, designed for an 80-column terminal: a table
that fits is printed whole, one line per row; one that does not becomes one record per row, its
*key* columns (ids, model names, signals, headlines) on the first line, never cut, the rest on
an indented line below, wrapped. ``--wide`` (:data:`WideOpt`, :func:`command_console`) prints
every table whole and every line unwrapped, however wide (for a pager, ``less -S``, or a file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console, JustifyMethod
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from driftscope_llm.services.store.attribution_report import (
    AttributedReport,
    FailedReport,
    Verification,
    VerificationFailure,
)
from driftscope_llm.services.store.model import Incident
from driftscope_llm.services.textsafety import terminal

__all__ = ["INCIDENT_COLUMNS", "WIDE_WIDTH", "Column", "WideOpt", "command_console", "escape_text",
           "headline_text", "incident_row", "print_report", "print_table"]

#: The console width of ``--wide``: no table is ever measured wider, so none is squeezed.
WIDE_WIDTH = 1_000_000
WideOpt = Annotated[bool, typer.Option(
    "--wide", help="Every table whole, one line per row, and no line wrapped, however wide the "
                   "terminal (for a pager or a file).")]
#: Indent of a record's second line (the columns that are not key columns).
_DETAIL_INDENT = "    "

_RANKING_COLUMNS = ("rank", "id", "mrr", "hits", "best rank", "mean score")
#: Narrower than this, the text column is left out rather than shown as a few letters.
_MIN_TEXT_WIDTH = 16


def escape_text(value: object) -> str:
    """``value`` as text safe to print with rich (module docstring): the one implementation,
    :func:`driftscope_llm.services.textsafety.terminal` (C0/C1, bidi controls, markup)."""
    return terminal(str(value))


def command_console(*, wide: bool = False, stderr: bool = False,
                    highlight: bool = False) -> Console:
    """The console a command prints its human output on: as wide as the terminal (``COLUMNS``,
    else 80 when not on a terminal), or with ``wide`` so wide that no line wraps."""
    return Console(stderr=stderr, highlight=highlight, width=WIDE_WIDTH if wide else None)


@dataclass(frozen=True)
class Column:
    """One column of :func:`print_table`. A ``key`` column (an id, a model, a signal, a
    headline) is never cut or wrapped; the others move below the key columns when the table
    does not fit the terminal."""

    name: str
    key: bool = False
    justify: JustifyMethod = "left"


def print_table(con: Console, title: str, columns: Sequence[Column],
                rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` (cells already escaped with :func:`escape_text`) under ``title``.

    As a table, one line per row, when it fits ``con``'s width (always on a ``--wide``
    console); else as records: the key cells of a row on one line (packed; a cell wider than
    the terminal alone on its line, whole), then its other non-empty cells as ``name value``
    pairs on an indented line, wrapped. No rows: the title alone.
    """
    if not rows:
        con.print(title, highlight=False)
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col.name, no_wrap=True, justify=col.justify)
    for row in rows:
        table.add_row(*row)
    natural = Measurement.get(con, con.options.update_width(WIDE_WIDTH), table).maximum
    if natural <= con.width:
        con.print(table)
        return
    keys = [n for n, col in enumerate(columns) if col.key]
    con.print(f"{title} ({' · '.join(escape_text(columns[n].name) for n in keys)}; "
              "--wide for the table)", highlight=False)
    for row in rows:
        _print_key_line(con, [row[n] for n in keys])
        details = " · ".join(f"{escape_text(col.name)} {cell}" for col, cell in
                             zip(columns, row, strict=True) if not col.key and cell)
        if details:
            width = max(con.width - len(_DETAIL_INDENT), 20)
            for line in Text.from_markup(details).wrap(con, width, overflow="fold"):
                line.rstrip()
                con.print(Text(_DETAIL_INDENT) + line, highlight=False, crop=False,
                          no_wrap=True)


def headline_text(inc: Incident) -> str:
    """The incident's headline as one phrase: ``signal on segment (detector)``."""
    return f"{inc.signal} on {inc.segment} ({inc.detector})"


INCIDENT_COLUMNS = (Column("incident", key=True), Column("model@version", key=True),
                    Column("severity"), Column("headline", key=True),
                    Column("effect", justify="right"), Column("x minimum", justify="right"),
                    Column("facets", justify="right"))
"""What ``replay`` and the demo say of each incident they opened (:func:`incident_row`)."""


def incident_row(inc: Incident) -> list[str]:
    """``inc`` as a row of :data:`INCIDENT_COLUMNS`; ``x minimum`` is the headline facet's
    effect over its signal's minimum effect."""
    e = escape_text
    top = max(inc.facets, key=lambda f: f.relative_effect, default=None)
    return [e(inc.id), e(f"{inc.model}@{inc.model_version}"), e(inc.severity),
            e(headline_text(inc)), f"{inc.effect_size:.3g}",
            f"{top.relative_effect:.1f}" if top is not None else "", str(len(inc.facets))]


def _print_key_line(con: Console, cells: list[str]) -> None:
    """Key cells two spaces apart, packed into lines of ``con.width``; never broken inside."""
    texts = [Text.from_markup(c) for c in cells if c]
    line = Text()
    for t in texts:
        if line and line.cell_len + 2 + t.cell_len > con.width:
            con.print(line, highlight=False, crop=False, no_wrap=True, overflow="ignore")
            line = Text()
        line = line + Text("  ") + t if line else t
    if line:
        con.print(line, highlight=False, crop=False, no_wrap=True, overflow="ignore")


def print_report(con: Console, report: AttributedReport | FailedReport,
                 texts: Mapping[str, str], *, text_width: int | None = 80) -> None:
    """Print ``report``: the ranking (with each example's text from ``texts`` when known, cut
    to ``text_width``, or to the terminal when None), the methods, their agreement and the
    behavioural verification."""
    e = escape_text
    if isinstance(report, FailedReport):
        con.print(f"[red]attribution failed[/red]: {e(report.reason)}", highlight=False)
        return
    n = len(report.exemplars)
    con.print(f"most responsible training examples ({e(report.primary_method)}, mean "
              f"reciprocal rank over {n} exemplar{'s' if n != 1 else ''})", highlight=False)
    numbers = [[str(row.rank), e(row.id), f"{row.mrr:.3f}", str(row.hits), str(row.best_rank),
                f"{row.mean_score:.4g}"] for row in report.aggregate]
    table = _ranking_table(numbers, None, 0)
    if texts:  # one line of text each, in the width the numbers leave, cut with an ellipsis
        room = con.width - Measurement.get(con, con.options, table).maximum - 3
        room = room if text_width is None else min(text_width, room)
        if room >= _MIN_TEXT_WIDTH:
            table = _ranking_table(numbers, [e(texts.get(row.id, "")) for row in
                                             report.aggregate], room)
    con.print(table)
    for name, m in report.methods.items():
        con.print(f"method {e(name)}: {e(m.spec)}, index {e(m.index)}, {m.seconds:.2f}s",
                  highlight=False)
    if report.skipped_exemplars:
        con.print(f"skipped exemplars without output text: "
                  f"{e(', '.join(report.skipped_exemplars))}", highlight=False)
    con.print(_agreement_line(report), highlight=False)
    if report.trust is not None:
        con.print(escape_text(report.trust.describe()), highlight=False)
    v = report.verification
    if isinstance(v, VerificationFailure):
        con.print(f"[red]verification failed[/red]: {e(v.error)}", highlight=False)
    elif isinstance(v, Verification):
        con.print(_verification_line(v), highlight=False)


def _ranking_table(numbers: list[list[str]], texts: list[str] | None, room: int) -> Table:
    """The ranking's columns (never wrapped) and, given ``texts``, a text column ``room`` wide."""
    table = Table()
    for col in _RANKING_COLUMNS:
        table.add_column(col, no_wrap=True)
    if texts is not None:
        table.add_column("text", no_wrap=True, overflow="ellipsis", max_width=room)
    for n, cells in enumerate(numbers):
        table.add_row(*cells, *([texts[n]] if texts is not None else []))
    return table


def _agreement_line(report: AttributedReport) -> str:
    a = report.agreement
    if a.mean_overlap is None:
        return "method agreement: only one method ran"
    line = f"method agreement: overlap@{report.top_k} {a.mean_overlap:.2f}"
    if a.mean_spearman is not None:
        line += f", Spearman {a.mean_spearman:.2f}"
    return line + f" (mean over {len(a.per_exemplar)} exemplars)"


def _verification_line(v: Verification) -> str:
    verdict = "supports the attribution" if v.supports_attribution else \
        "does not support the attribution"
    ratio = "n/a" if v.ratio is None else f"{v.ratio:.2f}"
    return (f"verification: unlearning the top-k lowered the exemplars' log-likelihood by "
            f"{v.top_k.effect:.3g} nats vs {v.random.effect:.3g} for random examples (ratio "
            f"{ratio}): {verdict}")
