"""docs/ingestion.md names a test for every mapping rule: each named test must exist, so a rule
cannot keep pointing at a test that was renamed or removed."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_test_named_in_the_ingestion_doc_exists() -> None:
    doc = (REPO / "docs" / "ingestion.md").read_text()
    named = set(re.findall(r"\btest_[a-z0-9_]+\b", doc))
    assert len(named) >= 25
    defined: set[str] = set()
    for path in (REPO / "tests").rglob("test_*.py"):
        defined.update(re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(), re.M))
    modules = {p.stem for p in (REPO / "tests").rglob("test_*.py")}  # test files named too
    missing = sorted(named - defined - modules)
    assert not missing, f"docs/ingestion.md names tests that do not exist: {missing}"
