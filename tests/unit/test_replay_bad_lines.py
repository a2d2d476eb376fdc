"""``driftscope replay`` over a file with poison lines (issue 19, failure 1): on ec31e46 the deep
line and the 5,000-digit line printed tracebacks and stopped the replay. Now each is counted by
reason on stderr, stdout keeps only anomalies, and every valid line is replayed.

Through the real ``driftscope_llm.services.cli.main.app``, with the embedder off (no model
export in a unit test).
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events

POISON = [
    b'{"event_id":"p1","ts":"2026-11-28T10:00:00Z","model":"m","output":"o","metadata":'
    + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"event_id":"p2","ts":"2026-11-28T10:00:00Z","model":"m","output":"o","latency_ms":'
    + b"9" * 5000 + b"}",
    b'{"event_id":"p3","ts":"2026-11-28T10:00:00Z","model":"m","output":"\\ud800"}',
    b"1e999",
]


# small windows keep the test quick; the isolation under test does not depend on them
SMALL = {"drift": {"reference_size": 200, "min_reference_values": 50, "window_size": 100,
                   "min_window": 30, "test_every": 25, "cooldown_events": 100}}


def _stream(path: Path) -> int:
    # v2 refuses half of billing from its first event: caught against v1's reference
    events = [*generate_events(StreamSpec(n=300, seed=1)),
              *generate_events(StreamSpec(n=500, seed=2, model_version="v2", prefix="b", drifts=(
                  Drift(start=0, route="billing", refusal_rate=0.5),)))]
    lines = [json.dumps(e).encode() for e in events]
    for i, poison in enumerate(POISON):  # spread through the file, inside replay batches
        lines.insert(100 + 150 * i, poison)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(events)


def test_replay_counts_poison_lines_and_replays_the_rest(tmp_path: Path) -> None:
    stream = tmp_path / "events.jsonl"
    n_valid = _stream(stream)
    config = tmp_path / "small.json"
    config.write_text(json.dumps(SMALL))
    result = CliRunner().invoke(app, ["replay", str(stream), "--no-embed", "--json",
                                      "--config", str(config)])
    assert result.exit_code == 0, result.output
    anomalies = [json.loads(line) for line in result.stdout.splitlines()]
    assert anomalies and all(a["model"] == "support-bot" for a in anomalies)
    # the planted change, where it was planted: v2's refusals in billing (or the model level)
    assert {a["model_version"] for a in anomalies} == {"v2"}
    assert {a["segment"] for a in anomalies} <= {"route=billing", "all"}, anomalies
    assert ("refusal", "route=billing") in {(a["signal"], a["segment"]) for a in anomalies}
    poison_ids = {"p1", "p2", "p3"}  # rejected lines never surface as an event or exemplar
    assert not poison_ids & {e for a in anomalies for e in [a["event_id"], *a["exemplars"]]}
    assert "Traceback" not in result.stderr
    assert "4 invalid lines" in result.stderr
    for reason in ("too_deep", "too_large", "invalid_text", "non_finite"):
        assert reason in result.stderr

    assert n_valid == 800


def test_replay_human_summary_counts_poison_lines(tmp_path: Path) -> None:
    stream = tmp_path / "events.jsonl"
    lines = [json.dumps(e).encode() for e in generate_events(StreamSpec(n=300, seed=5))]
    stream.write_bytes(b"\n".join([*lines[:150], *POISON, *lines[150:]]) + b"\n")
    human = CliRunner().invoke(app, ["replay", str(stream), "--no-embed"])
    assert human.exit_code == 0, human.output
    assert "300 valid events replayed, 4 invalid" in human.stdout
    assert "Traceback" not in human.stderr
