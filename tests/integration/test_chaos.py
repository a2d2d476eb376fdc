"""The chaos suite (``python -m benchmarks.chaos``) in its reduced form, one test per probe.

The probes pause, kill and restart Kafka and Redis, so they run on a private stack of their own
(``deploy/local/stack`` in a temporary directory, on free ports), started once for this module
and never the shared one. Each test asserts the row's invariants: nothing acknowledged is lost
or counted twice, every planted drift opens its incident and nothing else opens one, no stale
metric would page, no connection is reset (the full table: ``docs/collector.md``, "Chaos").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.chaos import PROBES, Row
from benchmarks.chaos_probes import Chaos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    work: Path = tmp_path_factory.mktemp("chaos")
    with Chaos(work, reduced=True, say=lambda line: None) as c:
        yield c


@pytest.mark.parametrize("probe", list(PROBES))
def test_chaos_probe_holds(chaos: Chaos, probe: str) -> None:
    chaos.ensure_up()  # a probe before may have failed with a service down
    row = Row(probe)
    PROBES[probe](chaos, row)
    assert row.error is None, row.notes
    assert (row.lost, row.duplicated, row.false_alerts, row.resets or 0) == (0, 0, 0, 0), \
        row.notes
    assert row.incidents_opened == row.incidents_expected, row.notes
    assert row.produced > 0 or probe == "http_slowloris"
    assert row.holds
