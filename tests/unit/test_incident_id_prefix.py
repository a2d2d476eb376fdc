"""Incident ids typed as a prefix (``services.store.lookup.resolve_incident_id``).

Invariants: a stored id is itself, even when it is also the prefix of other ids; a prefix that
starts one id is that id; one that starts none is ``NotFoundError`` (exit 4); one that starts
several is ``AmbiguousIdError`` (exit 2) naming at most ``SHOWN_MATCHES`` of them, sorted, and
saying whether there were more. The Redis implementation is checked through the CLI in
``tests/integration/test_cli_human_output.py``.
"""

from __future__ import annotations

import doctest
from datetime import UTC, datetime

import pytest

from driftscope_llm.services.errors import AmbiguousIdError, NotFoundError
from driftscope_llm.services.store import Incident, MemoryStore, lookup
from driftscope_llm.services.store.lookup import SHOWN_MATCHES, resolve_incident_id

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def store_with(*ids: str) -> MemoryStore:
    store = MemoryStore()
    for ident in ids:
        store.save_incident(Incident(
            id=ident, opened_at=T0, updated_at=T0, model="bot", model_version="v1",
            segment="all", signal="refusal", detector="cusum", statistic=2.0, threshold=1.0,
            effect_size=0.1, event_id="e1"))
    return store


def test_a_unique_prefix_is_the_id_it_starts() -> None:
    store = store_with("inc-3fa0c1d2", "inc-3fb9d2e3", "inc-77")
    assert resolve_incident_id(store, "inc-3fb") == "inc-3fb9d2e3"
    assert resolve_incident_id(store, "inc-7") == "inc-77"
    assert resolve_incident_id(store, "inc-3fa0c1d2") == "inc-3fa0c1d2"


def test_a_whole_id_wins_over_the_longer_ids_it_starts() -> None:
    store = store_with("inc-1", "inc-10", "inc-11")
    assert resolve_incident_id(store, "inc-1") == "inc-1"


def test_no_match_is_not_found() -> None:
    store = store_with("inc-1")
    for typed in ("inc-2", "", "inc-1x"):
        with pytest.raises(NotFoundError) as err:
            resolve_incident_id(store, typed)
        assert (err.value.what, err.value.id) == ("incident", typed)


def test_an_ambiguous_prefix_names_a_few_matches() -> None:
    store = store_with("inc-3fa", "inc-3fb")
    with pytest.raises(AmbiguousIdError) as err:
        resolve_incident_id(store, "inc-3f")
    assert (err.value.prefix, err.value.matches, err.value.more) == (
        "inc-3f", ["inc-3fa", "inc-3fb"], False)
    assert str(err.value) == ("incident prefix 'inc-3f' is ambiguous: it starts inc-3fa, "
                              "inc-3fb; type more of the id")
    many = store_with(*(f"inc-{n:02d}" for n in range(SHOWN_MATCHES + 3)))
    with pytest.raises(AmbiguousIdError) as err:
        resolve_incident_id(many, "inc-")
    assert err.value.matches == [f"inc-{n:02d}" for n in range(SHOWN_MATCHES)]
    assert err.value.more and str(err.value).endswith(", …; type more of the id")


def test_the_module_example_runs() -> None:
    assert doctest.testmod(lookup).failed == 0
