"""Composite keys cannot collide (issue 19, failure 3).

On ec31e46 ``model="a|b", model_version="c"`` and ``model="a", model_version="b|c"`` shared a
dedup key, and ``ref:{model}:{version}:{segment}`` had the same ambiguity with ``:``. Every
composite key is now built by ``driftscope_llm.services.keys.join_key``; these tests state its
invariant (injective, inverted by ``split_key``, ordinary names unchanged) and check each key
family.
"""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftscope_llm.services.keys import REDIS_RESERVED, join_key, split_key
from driftscope_llm.services.store.keys import StoreKeys
from driftscope_llm.services.store.model import dedup_key, incident_id_for

parts = st.lists(st.text(alphabet=st.sampled_from("ab|:%#*?[]\\\u00e9\u4e1c"), max_size=6),
                 min_size=1, max_size=5)


@settings(max_examples=400, deadline=None)
@given(a=parts, b=parts, sep=st.sampled_from(["|", ":", "#"]))
def test_join_key_is_injective_and_split_key_inverts_it(a: list[str], b: list[str],
                                                        sep: str) -> None:
    ka, kb = join_key(*a, sep=sep, reserved=REDIS_RESERVED), join_key(*b, sep=sep)
    assert split_key(ka, sep) == a and split_key(kb, sep) == b
    if a != b:
        assert ka != join_key(*b, sep=sep, reserved=REDIS_RESERVED)


def test_ordinary_names_keep_their_old_keys() -> None:
    """Existing checkpoints, references and incidents of ordinary names need no migration."""
    assert dedup_key("support-bot", "v2", "route=billing", "refusal", "cusum") == \
        "support-bot|v2|route=billing|refusal|cusum"
    keys = StoreKeys("driftscope:")
    assert keys.reference("support-bot", "v2", "all") == "driftscope:ref:support-bot:v2:all"
    assert keys.checkpoint("llm.outputs", 3) == "driftscope:cp:llm.outputs:3"
    assert keys.versions("m") == "driftscope:versions:m"
    dk = dedup_key("m", "v", "all", "length", "ks")
    assert keys.live(dk) == f"driftscope:live:{dk}"
    assert incident_id_for(dk, "e1") == incident_id_for("m|v|all|length|ks", "e1")


def test_dedup_keys_and_incident_ids_of_the_issue_do_not_collide() -> None:
    one = dedup_key("a|b", "c", "all", "refusal", "cusum")
    other = dedup_key("a", "b|c", "all", "refusal", "cusum")
    assert one != other
    assert incident_id_for(one, "e") != incident_id_for(other, "e")
    keys = StoreKeys()
    assert keys.live(one) != keys.live(other)


@pytest.mark.parametrize(("first", "second"), [
    (("a:b", "c", "all"), ("a", "b:c", "all")),
    (("a", "b", "c:d"), ("a", "b:c", "d")),
    (("a%3Ab", "c", "all"), ("a:b", "c", "all")),  # an already-encoded-looking name
])
def test_reference_keys_do_not_collide(first: tuple[str, str, str],
                                       second: tuple[str, str, str]) -> None:
    keys = StoreKeys()
    assert keys.reference(*first) != keys.reference(*second)


def test_a_glob_in_a_model_name_cannot_widen_a_scan() -> None:
    keys = StoreKeys()
    pattern = keys.versions("*")  # a model literally named "*"
    assert not fnmatch.fnmatchcase(keys.versions("support-bot"), pattern)
    assert not any(c in pattern.removeprefix("driftscope:versions:") for c in "*?[]")


def test_segment_stream_keys_of_different_labels_do_not_collide() -> None:
    from driftscope_llm.services.collector.segments import SegmentKeyer, SegmentSettings

    keyer = SegmentKeyer(SegmentSettings())
    one = keyer.segments_for("m", {"a=b": "c"})
    other = keyer.segments_for("m", {"a": "b=c"})
    assert one[1] != other[1]
    assert keyer.segments_for("m", {"route": "billing"})[1] == "route=billing"  # unchanged
    restored = SegmentKeyer(SegmentSettings())
    restored.restore([("m", one[1]), ("m", other[1])])
    assert restored.segments_for("m", {"a=b": "c"}) == one
    assert restored.segments_for("m", {"a": "b=c"}) == other
