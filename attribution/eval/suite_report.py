"""Rendering of :mod:`driftscope_llm.attribution.eval.suite` rows: Markdown and rich tables.

Both show, per (family, method): Acc, Cover, auPRC as ``mean [lo, hi]`` (95% bootstrap over
queries), the worst configuration's mean Cover, QLD against both random baselines (nats/token:
``QLD`` minus random removal, ``QLD−same`` minus the removal of as many random examples of the
target's label, > 0 = beats a perfect class identifier) and LDS (Spearman) with intervals, and
the wall time; then a per-method summary across families (the worst family's Cover, QLD and
QLD−same), which is what the default is chosen from.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from driftscope_llm.attribution.eval.suite import SuiteRow
from driftscope_llm.attribution.stats import Interval

__all__ = ["print_suite", "suite_markdown", "summary"]

_COLS = ("family", "method", "Acc", "Cover", "auPRC", "worst cfg Cover", "QLD", "QLD−same",
         "LDS", "seconds")


def _iv(v: Interval | None) -> str:
    return "-" if v is None else str(v)


def _num(x: float, fmt: str) -> str:
    return "-" if x != x else format(x, fmt)  # NaN: not measured


def _cells(r: SuiteRow) -> list[str]:
    return [r.family, r.method, _iv(r.acc), _iv(r.cover), _iv(r.auprc), f"{r.worst_cover:.2f}",
            _iv(r.qld), _iv(r.qld_same), _iv(r.lds), f"{r.seconds:.1f}"]


def summary(rows: Sequence[SuiteRow]) -> list[tuple[str, float, str, float, str, float, float]]:
    """Per method: (method, worst family Cover, that family, worst family QLD, that family,
    mean LDS, worst family QLD−same), best worst-case Cover first."""
    out = []
    for method in dict.fromkeys(r.method for r in rows):
        mine = [r for r in rows if r.method == method]
        wc = min(mine, key=lambda r: r.cover.mean)
        with_q = [r for r in mine if r.qld is not None]
        wq = min(with_q, key=lambda r: r.qld.mean if r.qld else 0.0) if with_q else None
        same = [r.qld_same.mean for r in mine if r.qld_same is not None]
        lds = [r.lds.mean for r in mine if r.lds is not None]
        out.append((method, wc.cover.mean, wc.family,
                    wq.qld.mean if wq and wq.qld else float("nan"), wq.family if wq else "-",
                    sum(lds) / len(lds) if lds else float("nan"),
                    min(same) if same else float("nan")))
    return sorted(out, key=lambda t: -t[1])


def suite_markdown(rows: Sequence[SuiteRow], wall_s: float | None = None) -> str:
    """The rows and the per-method summary as Markdown (for docs/attribution.md)."""
    lines = ["| " + " | ".join(_COLS) + " |", "|---|---|" + "---:|" * (len(_COLS) - 2)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    lines += ["", "| method | worst-family Cover | family | worst-family QLD | family | "
                  "worst-family QLD−same | mean LDS |", "|---|---:|---|---:|---|---:|---:|"]
    lines += [f"| {m} | {c:.2f} | {cf} | {_num(q, '+.3f')} | {qf} | {_num(qs, '+.3f')} | "
              f"{_num(ld, '.2f')} |" for m, c, cf, q, qf, ld, qs in summary(rows)]
    if wall_s is not None:
        lines += ["", f"Wall time: {wall_s:.0f} s."]
    return "\n".join(lines) + "\n"


def print_suite(rows: Sequence[SuiteRow], console: Console, wall_s: float | None = None) -> None:
    """The rows and the summary as rich tables."""
    table = Table(title="attribution evaluation (95% bootstrap intervals)")
    for col in _COLS:
        table.add_column(col, justify="left" if col in ("family", "method") else "right")
    for r in rows:
        table.add_row(*[escape(c) for c in _cells(r)])
    console.print(table)
    summ = Table(title="worst case across families")
    for col in ("method", "worst Cover", "family", "worst QLD", "family", "worst QLD−same",
                "mean LDS"):
        summ.add_column(col, justify="left" if col in ("method", "family") else "right")
    for m, c, cf, q, qf, ld, qs in summary(rows):
        summ.add_row(escape(m), f"{c:.2f}", escape(cf), _num(q, "+.3f"), escape(qf),
                     _num(qs, "+.3f"), _num(ld, ".2f"))
    console.print(summ)
    if wall_s is not None:
        console.print(f"wall time: {wall_s:.0f} s")
