"""How the CLI prints what came from outside, and the attribution report, on a terminal.

Text that came from outside driftscope (model names, segments, outputs, corpus text, ids) goes
through :func:`escape_text` before it reaches rich: markup such as ``[red]`` is shown literally
and control characters (terminal escape sequences, carriage returns) are shown as ``\\x1b``-style
escapes, so a crafted output cannot restyle or rewrite the on-call terminal.

:func:`print_report` is the one human view of an attribution report, shared by ``trace``,
``attribute`` and ``incidents show``.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from driftscope_llm.services.store.attribution_report import (
    AttributedReport,
    FailedReport,
    Verification,
    VerificationFailure,
)
from driftscope_llm.services.textsafety import terminal

__all__ = ["escape_text", "print_report"]

_RANKING_COLUMNS = ("rank", "id", "mrr", "hits", "best rank", "mean score")
#: Narrower than this, the text column is left out rather than shown as a few letters.
_MIN_TEXT_WIDTH = 16


def escape_text(value: object) -> str:
    """``value`` as text safe to print with rich (module docstring): the one implementation,
    :func:`driftscope_llm.services.textsafety.terminal` (C0/C1, bidi controls, markup)."""
    return terminal(str(value))


def print_report(con: Console, report: AttributedReport | FailedReport,
                 texts: Mapping[str, str], *, text_width: int = 80) -> None:
    """Print ``report``: the ranking (with each example's text from ``texts`` when known),
    the methods, their agreement and the behavioural verification."""
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
        room = min(text_width, con.width - Measurement.get(con, con.options, table).maximum - 3)
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
