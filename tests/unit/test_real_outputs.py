"""The real-model signal benchmark's committed data and its documented refusal figures.

``benchmarks/real_outputs.py`` samples SmolLM2-135M-Instruct once and saves the events and the hand
labels of its refusals in ``benchmarks/data/``; ``docs/drift-results.md`` states the refusal
detector's precision and recall on them. These tests hold the three together: the files load as
valid events and labels, and the documented counts are what the detector gives on the committed
files today (a changed pattern or a relabelled output fails here until the benchmark is rerun).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks import real_outputs as ro
from driftscope_llm.services.schemas import OutputEvent


@pytest.fixture(scope="module")
def events() -> list[dict[str, object]]:
    return ro.load_stream()


def test_committed_stream_is_valid_output_events_of_every_condition(
        events: list[dict[str, object]]) -> None:
    parsed = [OutputEvent.model_validate(e) for e in events]
    sampled = json.loads(ro.SETTINGS.read_text())["conditions"]
    assert set(sampled) <= set(ro.CONDITIONS) and {"base", "one_word"} <= set(sampled)
    by_condition = {name: len(pool) for name, pool in ro.pools(events).items()}
    assert by_condition == {name: ro.SIZES[name] for name in sampled}
    assert len({e.event_id for e in parsed}) == len(parsed) == sum(by_condition.values())
    for e in parsed:
        assert e.token_logprobs is not None and e.top_logprobs is not None
        assert len(e.token_logprobs) == len(e.top_logprobs) == e.output_tokens <= 48
        assert e.finish_reason in {"stop", "length"}
        assert (e.finish_reason == "length") == (e.output_tokens == 48)


def test_labels_name_sampled_events(events: list[dict[str, object]]) -> None:
    labels = ro.load_labels()
    assert len(labels) >= 140
    assert set(labels) <= {str(e["event_id"]) for e in events}
    assert 0 < sum(labels.values()) < len(labels)


def test_documented_refusal_figures_match_the_committed_files(
        events: list[dict[str, object]]) -> None:
    score = ro.refusal_score(events, ro.load_labels())
    text = ro.RESULTS.read_text()
    section = text[text.index(ro.SECTION):]
    m = re.search(r"against (\d+) outputs read and labelled by hand .*?: (\d+) true hits, "
                  r"(\d+) false hits, (\d+) misses; precision ([\d.]+|nan) .*?recall "
                  r"([\d.]+|nan) ", section, re.DOTALL)
    assert m is not None, "the refusal sentence is missing from the real-model section"
    assert [int(m.group(i)) for i in range(1, 5)] == [score.labelled, score.tp, score.fp,
                                                      score.fn]
    assert m.group(5) == f"{score.precision:.2f}"
    assert m.group(6) == f"{score.recall:.2f}"
    for eid, _ in score.misses:
        assert f"`{eid}`" in section


def test_bad_label_line_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"event_id": "base-00001", "refusal": false}\n'
                    '{"event_id": "base-00002", "refusal": "yes"}\n')
    with pytest.raises(ValueError, match=r"labels\.jsonl:2: "):
        ro.load_labels(path)


def test_write_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    path.write_text("toy table\n\n" + ro.SECTION + "\n\nold figures\n\n## Later\n\nkept\n")
    ro.write_section(ro.SECTION + "\n\nnew figures\n", path)
    assert path.read_text() == ("toy table\n\n" + ro.SECTION + "\n\nnew figures\n\n"
                                "## Later\n\nkept\n")
    other = tmp_path / "other.md"
    other.write_text("toy table\n")
    ro.write_section(ro.SECTION + "\n\nfigures\n", other)
    assert other.read_text() == "toy table\n\n" + ro.SECTION + "\n\nfigures\n"
