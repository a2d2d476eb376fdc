"""The chaos table is a contract (docs/collector.md shows it as printed): exact lines, the
verdict column, and no line wider than the widest row needs."""

from __future__ import annotations

from benchmarks.chaos import Row, table


def test_table_lines_and_verdicts() -> None:
    rows = [Row("poison_sigkill", produced=3020, counted=3000, dead_lettered=20,
                incidents_expected=1, incidents_opened=1),
            Row("redis", produced=3000, counted=2990, lost=10, incidents_expected=1,
                incidents_opened=0),
            Row("http_burst", produced=97, counted=97, resets=0)]
    assert table(rows).splitlines() == [
        "| probe | produced | counted | dead-lettered | lost | duplicated | incidents "
        "expected / opened | false alerts | resets | holds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        "| poison_sigkill | 3,020 | 3,000 | 20 | 0 | 0 | 1 / 1 | 0 |  | yes |",
        "| redis | 3,000 | 2,990 | 0 | 10 | 0 | 1 / 0 | 0 |  | **no** |",
        "| http_burst | 97 | 97 | 0 | 0 | 0 |  | 0 | 0 | yes |",
    ]


def test_a_row_holds_only_when_every_invariant_does() -> None:
    assert Row("x", incidents_expected=1, incidents_opened=1).holds
    assert not Row("x", incidents_expected=1, incidents_opened=0).holds  # a hidden drift
    assert Row("x", incidents_expected=1, incidents_opened=0).hidden == 1
    assert not Row("x", incidents_expected=1, incidents_opened=2, false_alerts=1).holds
    assert not Row("x", duplicated=1).holds
    assert not Row("x", resets=3).holds
    assert not Row("x", error="TimeoutError").holds
    assert Row("x", resets=0).holds
