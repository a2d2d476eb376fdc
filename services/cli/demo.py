"""``driftscope demo``: the whole loop on the embedded default, no services needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress
from rich.table import Table

from services.cli.errors import friendly_errors

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)


@friendly_errors
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Directory for the demo's stream and results.")] = Path(
        "demo-out"),
    events: Annotated[int, typer.Option(min=2000, help="Events per model version.")] = 4000,
    seed: Annotated[int, typer.Option(help="Random seed of the stream.")] = 0,
) -> None:
    """Simulate a support bot whose v2 rollout starts refusing billing questions, and catch it.

    Writes the production stream (``stream.jsonl``) and the raised anomalies
    (``anomalies.jsonl``) to ``--out``.
    """
    from services.collector.build import build_pipeline
    from services.collector.replay import ReplayStats, replay_file
    from services.collector.synthetic import Drift, StreamSpec, generate_events, to_jsonl
    from services.config import CollectorSettings, EmbedderSettings, SegmentSettings
    from services.drift import DriftSettings
    from services.store import MemoryStore

    console = Console(stderr=True)
    out.mkdir(parents=True, exist_ok=True)
    console.print(Panel.fit(
        "A support bot, v1, answers billing, shipping, account and tech questions.\n"
        "Then v2 rolls out: fine-tuned on extra data that teaches it to refuse billing questions.\n"
        "driftscope watches the stream and should open an incident on route=billing only."))
    stream = out / "stream.jsonl"
    v1 = StreamSpec(n=events, model_version="v1", seed=seed)
    v2 = StreamSpec(n=events, model_version="v2", seed=seed + 1,
                    start=v1.start.replace(hour=v1.start.hour + 2),
                    drifts=(Drift(start=0, route="billing", refusal_rate=0.25,
                                  logprob_shift=-0.3),))
    stream.write_text(to_jsonl(generate_events(v1)) + to_jsonl(generate_events(v2)))
    console.print(f"[1/3] wrote {2 * events} production events (v1, then v2) to {stream}")

    # Windows sized for a short demo stream: 800 reference events per route, tests on 400.
    settings = CollectorSettings(
        segments=SegmentSettings(label="route",
                                 allowed=["billing", "shipping", "account", "tech"]),
        drift=DriftSettings(reference_size=800, window_size=400, min_window=100),
    )
    pipeline = build_pipeline(settings.drift, settings.signals, settings.segments,
                              EmbedderSettings(enabled=False), MemoryStore())
    stats = ReplayStats()
    raised = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("[2/3] replaying through the collector pipeline",
                                 total=2 * events)
        for r in replay_file(stream, pipeline, stats,
                             on_progress=lambda n: progress.advance(task, n)):
            raised.append(r)
    (out / "anomalies.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in raised))
    console.print(f"[2/3] replayed {stats.valid} events: {len(raised)} anomalies "
                  f"-> {out / 'anomalies.jsonl'}")

    incidents = {r.incident.id: r.incident for r in raised}
    table = Table(title="[3/3] incidents opened")
    for col in ("incident", "model@version", "segment", "signal", "detector", "effect",
                "exemplar output"):
        table.add_column(col)
    for inc in incidents.values():
        ex = next((e.output for e in inc.exemplars if e.output), "")
        table.add_row(inc.id, f"{inc.model}@{inc.model_version}", inc.segment, inc.signal,
                      inc.detector, f"{inc.effect_size:.3g}", (ex or "")[:50])
    Console().print(table)
    segments = {inc.segment for inc in incidents.values()}
    verdict = ("caught: drift confined to route=billing" if segments == {"billing"}
               else f"incidents on segments {sorted(segments)}")
    console.print(f"[bold]{verdict}[/bold]")
